//! Where and how a client command connects (`--addr`, `--ca-cert`, `--client-cert`,
//! `--client-key`), and whether its `--token` may be sent there.
//!
//! An `https://` address always means TLS: the server's certificate is verified with the
//! system's CA certificates, or with `--ca-cert` only; if TLS cannot be set up, the command
//! fails, it never falls back to plaintext. An `http://` address is plaintext, so TLS options
//! with it are a mistake (refused, saying to use https://), and a token is sent over it only to
//! this machine (localhost or a loopback IP): anyone on the path could read it otherwise.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::ClientArgs;
use crate::config::{Pem, check_pem};

/// How long to wait for the server to accept the connection (and complete the TLS handshake)
/// before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The endpoint `--addr` names (a bare `host:port` is taken as `http://host:port`), with TLS
/// set up for an https:// address. Nothing is connected yet.
pub(super) fn endpoint(args: &ClientArgs) -> anyhow::Result<Endpoint> {
    let url = url(args);
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("--addr {:?} is not a valid URL (e.g. http://127.0.0.1:50051)", args.addr))?
        .connect_timeout(CONNECT_TIMEOUT);
    if url.starts_with("unix:") {
        // A Unix socket is this machine's: plaintext, like a loopback address.
        refuse_tls_options(args, &url)?;
        return Ok(endpoint);
    }
    let host = endpoint.uri().host().unwrap_or_default().to_owned();
    match endpoint.uri().scheme_str() {
        Some("https") => {
            let tls = client_tls(args)?;
            endpoint.tls_config(tls).with_context(|| {
                format!("cannot set up TLS for {url} (give the CA certificate that signed the server's with --ca-cert)")
            })
        }
        Some("http") => {
            refuse_tls_options(args, &url)?;
            if args.token.is_some() && !is_loopback_host(&host) {
                anyhow::bail!(
                    "refusing to send the token (--token or PAX_LEDGER_TOKEN) in plaintext to {host}: \
                     an http:// address carries it unencrypted; use https://{} (the server needs --tls-cert)",
                    authority(&url)
                );
            }
            Ok(endpoint)
        }
        _ => anyhow::bail!("--addr {:?}: the address must start with https:// or http://", args.addr),
    }
}

/// The URL `--addr` names: a bare `host:port` is taken as `http://host:port`.
pub(super) fn url(args: &ClientArgs) -> String {
    if args.addr.contains("://") || args.addr.starts_with("unix:") {
        args.addr.clone()
    } else {
        format!("http://{}", args.addr)
    }
}

/// TLS as the client options ask: the server verified with `--ca-cert` (or the system's CA
/// certificates), and `--client-cert` presented if given.
fn client_tls(args: &ClientArgs) -> anyhow::Result<ClientTlsConfig> {
    let tls = ClientTlsConfig::new().timeout(CONNECT_TIMEOUT);
    let tls = match &args.ca_cert {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read_pem("--ca-cert", path, Pem::Certificates)?)),
        None => tls.with_native_roots(),
    };
    Ok(match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => tls.identity(Identity::from_pem(
            read_pem("--client-cert", cert, Pem::Certificates)?,
            read_pem("--client-key", key, Pem::PrivateKey)?,
        )),
        // clap requires both or neither.
        _ => tls,
    })
}

/// The PEM file given with `flag`, checked to hold `what`.
fn read_pem(flag: &str, path: &Path, what: Pem) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("{flag} {}: {}", path.display(), crate::config::describe_io_error(&e)))?;
    check_pem(&text, what).map_err(|why| anyhow::anyhow!("{flag} {}: {why}", path.display()))?;
    Ok(text)
}

/// TLS options with a plaintext address: the user meant TLS, so say how to get it.
fn refuse_tls_options(args: &ClientArgs, url: &str) -> anyhow::Result<()> {
    let given: Vec<&str> = [
        args.ca_cert.as_ref().map(|_| "--ca-cert"),
        args.client_cert.as_ref().map(|_| "--client-cert"),
        args.client_key.as_ref().map(|_| "--client-key"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} {} for TLS, but --addr {url} is plaintext: use https://{}",
        given.join(", "),
        if given.len() == 1 { "is" } else { "are" },
        authority(url)
    )
}

/// `host:port` of a URL (what follows `scheme://`, up to the path).
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// Whether `host` (as a URL spells it: an IPv6 address in brackets) is this machine:
/// `localhost` or a loopback IP (127.0.0.0/8, ::1, or ::ffff:127.x.y.z).
fn is_loopback_host(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        client: ClientArgs,
    }

    /// The endpoint for a command line of client options, or the error's text.
    fn check(args: &[&str]) -> Result<Endpoint, String> {
        let command = Command::try_parse_from(std::iter::once("pax-ledger").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        endpoint(&command.client).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]", "[::ffff:127.0.0.1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["example.org", "10.0.0.1", "[::2]", "localhost.example.org", "0.0.0.0", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_token_goes_in_plaintext_only_to_a_loopback_address() {
        for addr in ["http://127.0.0.1:50051", "http://localhost:50051", "http://[::1]:50051", "127.0.0.1:50051"] {
            check(&["--addr", addr, "--token", "t"]).unwrap_or_else(|e| panic!("{addr}: {e}"));
        }
        for addr in ["http://ledger.example.org:50051", "http://10.1.2.3:50051", "ledger.example.org:50051"] {
            let error = check(&["--addr", addr, "--token", "t"]).unwrap_err();
            assert!(error.starts_with("refusing to send the token"), "{addr}: {error}");
            assert!(error.contains("use https://"), "{addr}: {error}");
        }
        check(&["--addr", "http://ledger.example.org:50051"]).expect("no token, no refusal");
    }

    #[test]
    fn tls_options_with_a_plaintext_address_are_refused() {
        let error = check(&["--addr", "http://127.0.0.1:7000", "--ca-cert", "ca.pem"]).unwrap_err();
        assert_eq!(
            error,
            "--ca-cert is for TLS, but --addr http://127.0.0.1:7000 is plaintext: use https://127.0.0.1:7000"
        );
        let error =
            check(&["--addr", "localhost:7000", "--client-cert", "c.pem", "--client-key", "k.pem"]).unwrap_err();
        assert!(error.starts_with("--client-cert, --client-key are for TLS"), "{error}");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let error = check(&["--addr", "https://localhost:7000", "--client-cert", "c.pem"]).unwrap_err();
        assert!(error.contains("--client-key"), "{error}");
    }

    #[test]
    fn an_unreadable_ca_certificate_is_named() {
        let error = check(&["--addr", "https://localhost:7000", "--ca-cert", "/nonexistent/ca.pem"]).unwrap_err();
        assert_eq!(error, "--ca-cert /nonexistent/ca.pem: no such file or directory");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = check(&["--addr", "https://localhost:7000", "--ca-cert", empty.to_str().unwrap()]).unwrap_err();
        assert!(error.ends_with("holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block)"), "{error}");
    }

    #[test]
    fn other_schemes_are_refused() {
        let error = check(&["--addr", "ftp://localhost:7000"]).unwrap_err();
        assert!(error.contains("must start with https:// or http://"), "{error}");
    }
}
