//! `pax-ledger principal …` and `pax-ledger token …`: who may do what.
//!
//! `principal bootstrap` works on a stopped server's data directory (it creates the first
//! admin, or a new one when no admin can authenticate any more); every other command asks a
//! running server's `AccessService`, as an admin (`--token`, or a client certificate).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::client::{BearerToken, connect_channel, status_error};
use super::{ClientArgs, Output};
use crate::config::{FlagOverrides, ServeConfig};
use crate::domain::{Credential, Grant, PrincipalName};
use crate::ledger::Ledger;
use crate::proto::v1 as pb;
use crate::proto::v1::access_service_client::AccessServiceClient;

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Create the first admin in a stopped server's data directory, and print its token on
    /// stdout (shown this once: the ledger keeps only its SHA-256).
    ///
    /// Refused while an admin that holds a credential exists; when none does (the last admin's
    /// token was revoked or lost), it creates another one, which is how access is recovered.
    /// The grant and the token are access events of the log, like every other.
    Bootstrap(BootstrapArgs),
    /// Give a principal grants (creating it with its first): admin, secretariat, reader,
    /// auditor, operator, delegate:CODE (a member code), authority:CODE (an origin code), and
    /// signed-only (an obligation: every event it records must carry its signature).
    Grant(GrantArgs),
    /// Take grants away; with none named, every grant and every credential (the principal can
    /// no longer authenticate, from its next request on).
    Revoke(RevokeArgs),
    /// Every principal, its grants and its credentials (ids only).
    List(ClientArgs),
    /// Bind a client certificate to a principal, for mutual TLS (serve --tls-client-ca).
    BindCert(BindCertArgs),
    /// Register an Ed25519 public key the principal signs its events with (append --sign-key);
    /// `token revoke` retires it. It authenticates nothing.
    RegisterKey(RegisterKeyArgs),
    /// Who the server says you are (with --token or a client certificate).
    Whoami(ClientArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a new bearer token for a principal and print it on stdout (shown this once).
    New(TokenNewArgs),
    /// Revoke one credential of a principal (a token, a certificate or a signing key), by its id.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The stopped server's data directory [default: ./data]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The server's configuration file, so that the same signing key and settings are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The admin's name: lower-case letters and digits, single hyphens between groups.
    #[arg(long, default_value = "admin")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The principal (created by its first grant).
    pub principal: String,
    /// One or more grants: admin, secretariat, reader, auditor, operator, delegate:CODE,
    /// authority:CODE.
    #[arg(required = true)]
    pub grants: Vec<String>,
    /// Why (recorded in the event).
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub principal: String,
    /// The grants to take away; none: every grant and every credential.
    pub grants: Vec<String>,
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct BindCertArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub principal: String,
    /// The certificate's SHA-256 fingerprint (64 hexadecimal digits; colons allowed).
    #[arg(long, required_unless_present = "cert", conflicts_with = "cert")]
    pub fingerprint: Option<String>,
    /// The certificate (PEM): its fingerprint is computed here.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RegisterKeyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub principal: String,
    /// The public key: 64 hexadecimal digits (as `pax-ledger key new` prints it).
    #[arg(long, required_unless_present = "key", conflicts_with = "key")]
    pub public_key: Option<String>,
    /// The principal's key file: its public half is computed here (the secret stays here).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TokenNewArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub principal: String,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub principal: String,
    /// The credential's id (as `principal list` shows it) or its full digest.
    pub credential: String,
    #[arg(long, default_value = "")]
    pub reason: String,
}

type Client = AccessServiceClient<InterceptedService<Channel, BearerToken>>;

async fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    Ok(AccessServiceClient::new(connect_channel(args).await?))
}

fn grants(raw: &[String]) -> anyhow::Result<Vec<pb::Grant>> {
    raw.iter()
        .map(|g| {
            Grant::parse("grant", g)
                .map(|grant| crate::service::convert::grant_pb(&grant))
                .map_err(|e| anyhow::anyhow!("{}", e.description))
        })
        .collect()
}

fn print_change(what: &str, change: &pb::AccessChange, output: Output) {
    match output {
        Output::Json => {
            let events: Vec<_> = change
                .events
                .iter()
                .map(|e| serde_json::json!({"event_id": e.event_id, "stream": e.stream, "revision": e.revision, "position": e.position}))
                .collect();
            println!("{}", serde_json::json!({ "change": what, "events": events }));
        }
        Output::Table => {
            let positions: Vec<String> = change.events.iter().map(|e| e.position.to_string()).collect();
            println!("{what}: recorded at position {}", positions.join(", "));
        }
    }
}

pub async fn run(command: PrincipalCommand) -> anyhow::Result<ExitCode> {
    match command {
        PrincipalCommand::Bootstrap(args) => bootstrap(args).await,
        PrincipalCommand::Grant(args) => {
            let request = pb::GrantRequest {
                principal: args.principal.clone(),
                grants: grants(&args.grants)?,
                reason: args.reason,
            };
            let change = client(&args.client).await?.grant(request).await.map_err(status_error)?.into_inner();
            print_change(
                &format!("granted {} to {}", args.grants.join(", "), args.principal),
                &change,
                args.client.output,
            );
            Ok(ExitCode::SUCCESS)
        }
        PrincipalCommand::Revoke(args) => {
            let request = pb::RevokeRequest {
                principal: args.principal.clone(),
                grants: grants(&args.grants)?,
                reason: args.reason,
            };
            let change = client(&args.client).await?.revoke(request).await.map_err(status_error)?.into_inner();
            let what =
                if args.grants.is_empty() { "every grant and credential".to_owned() } else { args.grants.join(", ") };
            print_change(&format!("revoked {what} of {}", args.principal), &change, args.client.output);
            Ok(ExitCode::SUCCESS)
        }
        PrincipalCommand::List(args) => {
            let list = client(&args)
                .await?
                .list_principals(pb::ListPrincipalsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            for principal in &list.principals {
                print_principal(principal, args.output);
            }
            Ok(ExitCode::SUCCESS)
        }
        PrincipalCommand::BindCert(args) => {
            let fingerprint = match (&args.fingerprint, &args.cert) {
                (Some(fingerprint), _) => fingerprint.clone(),
                (None, Some(path)) => certificate_fingerprint(path)?,
                (None, None) => unreachable!("clap requires one"),
            };
            let request =
                pb::BindCertificateRequest { principal: args.principal.clone(), fingerprint: fingerprint.clone() };
            let change =
                client(&args.client).await?.bind_certificate(request).await.map_err(status_error)?.into_inner();
            print_change(
                &format!("bound certificate {fingerprint} to {}", args.principal),
                &change,
                args.client.output,
            );
            Ok(ExitCode::SUCCESS)
        }
        PrincipalCommand::RegisterKey(args) => {
            let public_key = match (&args.public_key, &args.key) {
                (Some(public_key), _) => public_key.trim().to_owned(),
                (None, Some(path)) => {
                    crate::audit::keys::public_key_hex(&crate::audit::keys::load(path)?.verifying_key())
                }
                (None, None) => unreachable!("clap requires one"),
            };
            let request =
                pb::RegisterSigningKeyRequest { principal: args.principal.clone(), public_key: public_key.clone() };
            let change =
                client(&args.client).await?.register_signing_key(request).await.map_err(status_error)?.into_inner();
            print_change(
                &format!("registered signing key {public_key} of {}", args.principal),
                &change,
                args.client.output,
            );
            Ok(ExitCode::SUCCESS)
        }
        PrincipalCommand::Whoami(args) => {
            let me = client(&args).await?.who_am_i(pb::WhoAmIRequest {}).await.map_err(status_error)?.into_inner();
            print_principal(&me, args.output);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::New(args) => {
            let issued = client(&args.client)
                .await?
                .issue_token(pb::IssueTokenRequest { principal: args.principal.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            let id = issued.credential.as_ref().map(|c| c.id.clone()).unwrap_or_default();
            match args.client.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"principal": args.principal, "token": issued.token, "credential_id": id})
                ),
                Output::Table => println!("{}", issued.token),
            }
            eprintln!(
                "token {id} issued to {}; it is shown this once (the ledger keeps only its SHA-256)",
                args.principal
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke(args) => {
            let request = pb::RevokeCredentialRequest {
                principal: args.principal.clone(),
                credential: args.credential.clone(),
                reason: args.reason,
            };
            let change =
                client(&args.client).await?.revoke_credential(request).await.map_err(status_error)?.into_inner();
            print_change(
                &format!("revoked credential {} of {}", args.credential, args.principal),
                &change,
                args.client.output,
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_principal(principal: &pb::Principal, output: Output) {
    let grants: Vec<String> = principal.grants.iter().map(crate::archive::event_line::grant_text).collect();
    let credentials: Vec<String> = principal
        .credentials
        .iter()
        .map(|c| format!("{} {}", crate::archive::event_line::credential_kind_name(c.kind), c.id))
        .collect();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "name": principal.name,
                "grants": grants,
                "credentials": credentials,
                "created_position": principal.created_position,
                "updated_position": principal.updated_position,
            })
        ),
        Output::Table => println!(
            "{}\tgrants: {}\tcredentials: {}\tsince position {}",
            principal.name,
            if grants.is_empty() { "none".to_owned() } else { grants.join(", ") },
            if credentials.is_empty() { "none".to_owned() } else { credentials.join(", ") },
            principal.created_position
        ),
    }
}

/// The SHA-256 fingerprint of the first certificate of a PEM file.
fn certificate_fingerprint(path: &std::path::Path) -> anyhow::Result<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .next()
        .with_context(|| format!("{}: no certificate in it", path.display()))?
        .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
    Ok(crate::service::peer::CertFingerprint::of_der(der.as_ref()).to_string())
}

/// Creates the first admin (see [`PrincipalCommand::Bootstrap`]).
async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let name = PrincipalName::parse("--name", &args.name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let flags = FlagOverrides { data: args.data, ..Default::default() };
    let (config, _) = ServeConfig::load_with_origins(args.config.as_deref(), &flags)?;
    std::fs::create_dir_all(&config.data).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the directory: {}",
            config.data.display(),
            crate::config::describe_io_error(&e)
        )
    })?;
    let data = config.data.clone();
    let ledger_config = config.ledger();
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&data, ledger_config))
        .await?
        .with_context(|| format!("opening the ledger in {} (is its server stopped?)", config.data.display()))?;
    let outcome = ledger.bootstrap(&name).await;
    let closing = ledger.clone();
    tokio::task::spawn_blocking(move || closing.shutdown()).await?;
    let (token, outcome) = outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
    let credential = Credential::of_token(&token);
    let positions: Vec<String> = outcome.events.iter().map(|e| e.position.to_string()).collect();
    println!("{token}");
    eprintln!(
        "principal {name} holds admin, with token {} (recorded at position {}); the token is shown this once: keep it secret, and pass it as --token or PAX_LEDGER_TOKEN",
        credential.id(),
        positions.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
