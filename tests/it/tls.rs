//! TLS and mutual TLS end to end, with certificates made here (rcgen): a CA, a server
//! certificate for `localhost` and 127.0.0.1, a client certificate from that CA and one from
//! another CA. Plaintext to a TLS port, and under mutual TLS a client without a certificate or
//! with one from another CA, are refused; a handler sees the SHA-256 fingerprint of the
//! certificate its client presented; the binary works over TLS and mutual TLS, and never falls
//! back to plaintext or sends a token in plaintext to another machine.

use std::path::{Path, PathBuf};

use pax_ledger::config::ServeConfig;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pax_ledger::server::{Options, ServerTls};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::crash::ServerProcess;
use crate::fake_server::{FakeServer, Script};
use crate::support::*;

// ------------------------------------------------------------------------------------------
// Certificates

/// A certificate and its private key, in PEM, also written to `NAME.pem` and `NAME.key`.
pub(crate) struct Issued {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
    cert: PathBuf,
    key: PathBuf,
}

impl Issued {
    fn write(dir: &Path, name: &str, cert_pem: String, key_pem: String, der: Vec<u8>) -> Self {
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, &key_pem).unwrap();
        Self { cert_pem, key_pem, der, cert, key }
    }

    pub(crate) fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// SHA-256 over the certificate's DER bytes, in lower-case hex: computed here, apart from
    /// the server's code.
    pub(crate) fn fingerprint(&self) -> String {
        Sha256::digest(&self.der).iter().map(|byte| format!("{byte:02x}")).collect()
    }

    pub(crate) fn cert_arg(&self) -> &str {
        self.cert.to_str().unwrap()
    }

    pub(crate) fn key_arg(&self) -> &str {
        self.key.to_str().unwrap()
    }
}

/// Two certificate authorities and the certificates they issued, in a temporary directory.
pub(crate) struct Pki {
    pub(crate) ca: Issued,
    pub(crate) other_ca: Issued,
    pub(crate) server: Issued,
    pub(crate) client: Issued,
    /// A client certificate issued by the other CA.
    pub(crate) stranger: Issued,
    pub(crate) dir: tempfile::TempDir,
    /// The CA, to issue more client certificates ([`Pki::issue_client`]).
    ca_issuer: Authority,
}

type Authority = CertifiedIssuer<'static, KeyPair>;

impl Pki {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_issuer, ca) = authority(dir.path(), "ca", "pax-ledger test CA");
        let (other_issuer, other_ca) = authority(dir.path(), "other-ca", "another CA");
        let server_names = ["localhost", "127.0.0.1"];
        let server = leaf(dir.path(), "server", &ca_issuer, &server_names, ExtendedKeyUsagePurpose::ServerAuth);
        let client = leaf(dir.path(), "client", &ca_issuer, &[], ExtendedKeyUsagePurpose::ClientAuth);
        let stranger = leaf(dir.path(), "stranger", &other_issuer, &[], ExtendedKeyUsagePurpose::ClientAuth);
        Self { ca, other_ca, server, client, stranger, dir, ca_issuer }
    }

    /// Another client certificate from the CA, written to `NAME.pem` and `NAME.key`.
    pub(crate) fn issue_client(&self, name: &str) -> Issued {
        leaf(self.dir.path(), name, &self.ca_issuer, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// The server's TLS, read and checked by the configuration as `serve` does; `mutual`: with
    /// the CA as client CA.
    pub(crate) fn server_tls(&self, mutual: bool) -> ServerTls {
        let config = ServeConfig {
            tls_cert: Some(self.server.cert.clone()),
            tls_key: Some(self.server.key.clone()),
            tls_client_ca: mutual.then(|| self.ca.cert.clone()),
            ..ServeConfig::default()
        };
        config.tls().expect("valid TLS files").expect("TLS configured")
    }

    pub(crate) fn options(&self, mutual: bool) -> Options {
        Options { tls: Some(self.server_tls(mutual)), ..Options::default() }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

fn authority(dir: &Path, name: &str, common_name: &str) -> (Authority, Issued) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let key_pem = key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(params, key).unwrap();
    let issued = Issued::write(dir, name, issuer.pem(), key_pem, issuer.der().to_vec());
    (issuer, issued)
}

fn leaf(dir: &Path, name: &str, issuer: &Authority, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Issued::write(dir, name, cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

// ------------------------------------------------------------------------------------------
// The generated client

/// A connection to `url` over TLS that trusts `ca` and presents `identity`, if any.
pub(crate) async fn tls_channel(
    url: &str,
    ca: &Issued,
    identity: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.cert_pem));
    if let Some(identity) = identity {
        tls = tls.identity(identity.identity());
    }
    Channel::from_shared(url.to_owned()).unwrap().tls_config(tls)?.connect().await
}

/// A client of `url` over TLS that trusts `ca` and presents `identity`, if any.
pub(crate) async fn tls_client(
    url: &str,
    ca: &Issued,
    identity: Option<&Issued>,
) -> Result<LedgerServiceClient<Channel>, tonic::transport::Error> {
    Ok(LedgerServiceClient::new(tls_channel(url, ca, identity).await?))
}

/// Appends one new member through `client`, and returns the error's text if that fails at any
/// step (under TLS 1.3 a refused client certificate may show only at the first request).
async fn append_member(
    client: Result<LedgerServiceClient<Channel>, tonic::transport::Error>,
    code: &str,
) -> Result<(), String> {
    let mut client = client.map_err(|e| format!("connect: {e:?}"))?;
    client.append(append(vec![member_joined(code)])).await.map(drop).map_err(|status| format!("{status:?}"))
}

// ------------------------------------------------------------------------------------------
// The server

#[tokio::test]
async fn plaintext_to_a_tls_port_is_refused() {
    let pki = Pki::new();
    let server = TestServer::start_tls(pki.options(false)).await;
    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await?;
        Ok::<_, tonic::transport::Error>(LedgerServiceClient::new(channel))
    }
    .await;
    let result = append_member(plaintext, "JP").await;
    assert!(result.is_err(), "a plaintext client was served by a TLS port");
    assert_eq!(server.ledger.durable_head().position.0, 0, "nothing may be appended");
    server.stop().await;
}

#[tokio::test]
async fn tls_serves_appends_and_reads() {
    let pki = Pki::new();
    let server = TestServer::start_tls(pki.options(false)).await;
    assert!(server.url.starts_with("https://localhost:"), "{}", server.url);
    append_member(tls_client(&server.url, &pki.ca, None).await, "JP").await.expect("append over TLS");
    let mut client = tls_client(&server.url, &pki.ca, None).await.expect("connect over TLS");
    let events = read_all(&mut client).await;
    assert_eq!(events.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(), ["member-JP"]);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_refused() {
    let pki = Pki::new();
    let server = TestServer::start_tls(pki.options(false)).await;
    let error = append_member(tls_client(&server.url, &pki.other_ca, None).await, "JP").await.unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_its_ca() {
    let pki = Pki::new();
    let server = TestServer::start_tls(pki.options(true)).await;
    let without = append_member(tls_client(&server.url, &pki.ca, None).await, "JP").await;
    assert!(without.is_err(), "a client without a certificate was served");
    let stranger = append_member(tls_client(&server.url, &pki.ca, Some(&pki.stranger)).await, "JP").await;
    assert!(stranger.is_err(), "a client with a certificate from another CA was served");
    assert_eq!(server.ledger.durable_head().position.0, 0, "nothing may be appended by a refused client");

    append_member(tls_client(&server.url, &pki.ca, Some(&pki.client)).await, "JP").await.expect("a client of the CA");
    let mut client = tls_client(&server.url, &pki.ca, Some(&pki.client)).await.unwrap();
    assert_eq!(read_all(&mut client).await.len(), 1);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn a_handler_sees_the_fingerprint_of_the_client_certificate() {
    let pki = Pki::new();
    let mutual = FakeServer::start_tls(Script::default(), &pki.server_tls(true)).await;
    append_member(tls_client(&mutual.url, &pki.ca, Some(&pki.client)).await, "JP").await.unwrap();
    let seen = mutual.script.lock().unwrap().client_fingerprints.clone();
    assert_eq!(seen, [Some(pki.client.fingerprint())]);
    assert_eq!(pki.client.fingerprint().len(), 64);

    // TLS without a client CA asks for no certificate: there is no fingerprint to see.
    let tls_only = FakeServer::start_tls(Script::default(), &pki.server_tls(false)).await;
    append_member(tls_client(&tls_only.url, &pki.ca, None).await, "JP").await.unwrap();
    assert_eq!(tls_only.script.lock().unwrap().client_fingerprints, [None]);
}

// ------------------------------------------------------------------------------------------
// The binary

/// `pax-ledger ARGS` to its end: (succeeded, stdout, stderr).
async fn pax(args: &[&str]) -> (bool, String, String) {
    let output = run_to_end(pax_ledger(args), b"").await;
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_queries_over_tls_and_mutual_tls() {
    let pki = Pki::new();
    let ca = pki.ca.cert_arg();
    let server = TestServer::start_tls(pki.options(false)).await;
    append_member(tls_client(&server.url, &pki.ca, None).await, "JP").await.unwrap();
    let ip_url = format!("https://127.0.0.1:{}", server.addr.port());
    for url in [server.url.as_str(), ip_url.as_str()] {
        let (ok, stdout, stderr) = pax(&["members", "--addr", url, "--ca-cert", ca, "--output", "json"]).await;
        assert!(ok, "{url}: {stderr}");
        assert!(stdout.contains("\"code\":\"JP\""), "{url}: {stdout}");
    }
    server.stop().await;

    let server = TestServer::start_tls(pki.options(true)).await;
    append_member(tls_client(&server.url, &pki.ca, Some(&pki.client)).await, "JP").await.unwrap();
    let (cert, key) = (pki.client.cert_arg(), pki.client.key_arg());
    let mutual = ["members", "--addr", &server.url, "--ca-cert", ca, "--client-cert", cert, "--client-key", key];
    let (ok, stdout, stderr) = pax(&[&mutual[..], &["--output", "json"]].concat()).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"code\":\"JP\""), "{stdout}");
    let (ok, _, stderr) = pax(&["members", "--addr", &server.url, "--ca-cert", ca]).await;
    assert!(!ok, "members without a client certificate succeeded under mutual TLS");
    assert!(stderr.starts_with("error: "), "{stderr}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_a_trusted_ca_is_a_tls_error_never_plaintext() {
    let pki = Pki::new();
    let server = TestServer::start_tls(pki.options(false)).await;
    // The system's CA certificates do not include the test CA; the other CA did not sign the
    // server's certificate.
    let other_ca = pki.other_ca.cert_arg();
    for extra in [&[][..], &["--ca-cert", other_ca][..]] {
        let (ok, _, stderr) = pax(&[&["members", "--addr", &server.url][..], extra].concat()).await;
        assert!(!ok, "{extra:?}: members succeeded against a server it must not trust");
        assert!(stderr.contains("certificate") || stderr.contains("certs"), "{extra:?}: {stderr}");
    }
    // A plaintext server at an https:// address: the client's handshake fails.
    let plaintext = TestServer::start().await;
    let https = format!("https://localhost:{}", plaintext.addr.port());
    let (ok, _, stderr) = pax(&["members", "--addr", &https, "--ca-cert", pki.ca.cert_arg()]).await;
    assert!(!ok, "an https:// address was served in plaintext");
    assert!(stderr.starts_with("error: cannot connect"), "{stderr}");
    assert_eq!(server.ledger.durable_head().position.0, 0);
    plaintext.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_options_that_would_send_secrets_in_plaintext_are_refused_before_connecting() {
    let pki = Pki::new();
    // TEST-NET-1: nothing answers there, so only a refusal before connecting ends at once.
    let started = std::time::Instant::now();
    let (ok, _, stderr) = pax(&["members", "--addr", "http://192.0.2.1:50051", "--token", "secret"]).await;
    assert!(!ok);
    assert!(stderr.starts_with("error: refusing to send the token"), "{stderr}");
    assert!(stderr.contains("https://192.0.2.1:50051"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "it tried to connect first");

    let mut command = pax_ledger(&["members", "--addr", "http://ledger.example.org:50051"]);
    command.env("PAX_LEDGER_TOKEN", "secret");
    let output = run_to_end(command, b"").await;
    assert!(text(&output.stderr).starts_with("error: refusing to send the token"), "{}", text(&output.stderr));

    let ca = pki.ca.cert_arg();
    let (ok, _, stderr) = pax(&["members", "--addr", "http://127.0.0.1:1", "--ca-cert", ca]).await;
    assert!(!ok);
    assert_eq!(
        stderr.trim_end(),
        "error: --ca-cert is for TLS, but --addr http://127.0.0.1:1 is plaintext: use https://127.0.0.1:1"
    );
}

// ------------------------------------------------------------------------------------------
// serve

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_mutual_tls_from_the_environment_says_so_and_serves_the_binary() {
    let pki = Pki::new();
    let data = pki.path("data");
    let stderr_path = pki.dir.path().join("serve.stderr");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pax-ledger"));
    command
        .args(["serve", "--data", &data, "--listen", "127.0.0.1:0"])
        .args(["--tls-cert", pki.server.cert_arg()])
        .env("PAX_LEDGER_TLS_KEY", &pki.server.key)
        .env("PAX_LEDGER_TLS_CLIENT_CA", &pki.ca.cert)
        .env("RUST_LOG", "info");
    let serving = ServerProcess::start_command(command, &stderr_path).await;
    let port = serving.url.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}");
    let (cert, key, ca) = (pki.client.cert_arg(), pki.client.key_arg(), pki.ca.cert_arg());
    let mut status = pax_ledger(&["status", "--addr", &url, "--output", "json"]);
    status.env("PAX_LEDGER_CA_CERT", ca).env("PAX_LEDGER_CLIENT_CERT", cert).env("PAX_LEDGER_CLIENT_KEY", key);
    let output = run_to_end(status, b"").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("\"position\""), "{}", text(&output.stdout));
    let log = serving.stderr_tail();
    let transport: Vec<&str> = log.lines().filter(|line| line.contains("transport:")).collect();
    assert_eq!(transport.len(), 1, "{log}");
    assert!(transport[0].contains("transport: mutual TLS"), "{log}");
    let pid = serving.pid();
    assert!(serving.terminate(pid).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_tls_files_that_do_not_fit_by_name() {
    let pki = Pki::new();
    let data = pki.path("data");
    let listen = ["--data", &data, "--listen", "127.0.0.1:0"];
    let (server_cert, client_key) = (pki.server.cert_arg(), pki.client.key_arg());
    let cases: [(&[&str], String); 3] = [
        (
            &["--tls-cert", server_cert],
            "error: configuration: tls_cert (PAX_LEDGER_TLS_CERT) is set but tls_key (PAX_LEDGER_TLS_KEY) is not"
                .to_owned(),
        ),
        (
            &["--tls-cert", pki.server.key_arg(), "--tls-key", client_key],
            format!(
                "error: configuration: tls_cert (PAX_LEDGER_TLS_CERT) {}: holds no PEM certificate",
                pki.server.key_arg()
            ),
        ),
        (
            &["--tls-cert", server_cert, "--tls-key", client_key],
            format!(
                "error: configuration: tls_key (PAX_LEDGER_TLS_KEY) {client_key}: does not go with tls_cert {server_cert}"
            ),
        ),
    ];
    for (args, expected) in cases {
        let (ok, _, stderr) = pax(&[&["serve"][..], &listen[..], args].concat()).await;
        assert!(!ok, "{args:?}: serve started");
        assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        assert!(!Path::new(&data).exists(), "{args:?}: the data directory was created");
    }
}
