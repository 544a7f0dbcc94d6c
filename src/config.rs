//! Server configuration: flags > environment (`PAX_LEDGER_*`) > optional TOML file > defaults.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use serde::{Deserialize, Serialize};

use crate::ledger::LedgerConfig;
use crate::server::ServerTls;
use crate::service::AccessLimits;
use crate::store::StoreConfig;

/// Everything `serve` can be told. Field names are the TOML keys and, upper-cased with the
/// `PAX_LEDGER_` prefix, the environment variables (`PAX_LEDGER_LISTEN`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The data directory (sled database).
    pub data: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Serve Prometheus metrics at `http://<this address>/metrics` [default: not served].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Allow listening on a non-loopback address in plaintext, or while no principal exists.
    pub insecure: bool,
    /// sled's page cache, in MiB.
    pub cache_capacity_mib: u64,
    /// Append requests waiting for the writer before RESOURCE_EXHAUSTED.
    pub append_queue_max: usize,
    /// Most events per commit group.
    pub group_events_max: usize,
    /// Streams whose state the writer keeps in memory.
    pub stream_cache_max: usize,
    /// The Ed25519 signing key of checkpoints [default: `<data>/signing.key`, generated on
    /// first start with owner-only permissions].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// Issue a signed checkpoint every this many events…
    pub checkpoint_every_events: u64,
    /// …or every this many seconds, if the log grew.
    pub checkpoint_every_secs: u64,
    /// The log's origin: the first line of its checkpoints (C2SP signed notes) and its key's
    /// name, a schema-less URL such as `ledger.example.org/pax-silica` [default:
    /// `pax-ledger/<key id>`]. Witnesses and auditors know the log by it: keep it once chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_origin: Option<String>,
    /// Witnesses asked to cosign every checkpoint, each `<witness verifier key>@<URL>` (the
    /// key as `pax-ledger witness serve` prints it; the URL its prefix, http://).
    pub witnesses: Vec<String>,
    /// Save the event-id index's snapshot every this many events (and at a clean stop): a
    /// start after a crash scans at most about this many records.
    pub id_snapshot_every_events: u64,
    /// The server's certificate chain (PEM, leaf first): with `tls_key`, serve TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): with them, mutual TLS — every client must present a certificate
    /// that chains to one of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// Requests per second one principal may make, sustained (0: no limit).
    pub principal_requests_per_second: u32,
    /// Subscriptions one principal may hold open at once (0: no limit).
    pub principal_subscriptions_max: usize,
    /// Refuse appends (and hold the views) while the data's file system has less than this
    /// many MiB free; they resume once space is freed (0: no check).
    pub disk_free_min_mib: u64,
    /// Export tracing spans to this OpenTelemetry collector over OTLP/gRPC [default: not
    /// exported].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let ledger = LedgerConfig::default();
        Self {
            data: PathBuf::from("data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: None,
            insecure: false,
            cache_capacity_mib: ledger.store.cache_capacity_bytes / (1024 * 1024),
            append_queue_max: ledger.append_queue_max,
            group_events_max: ledger.group_events_max,
            stream_cache_max: ledger.stream_cache_max,
            signing_key: None,
            checkpoint_every_events: ledger.audit.checkpoint_every_events,
            checkpoint_every_secs: ledger.audit.checkpoint_every.as_secs(),
            checkpoint_origin: None,
            witnesses: Vec::new(),
            id_snapshot_every_events: ledger.id_snapshot_every_events,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            principal_requests_per_second: AccessLimits::default().requests_per_second,
            principal_subscriptions_max: AccessLimits::default().subscriptions_max,
            disk_free_min_mib: ledger.disk_free_min_bytes / (1024 * 1024),
            otlp_endpoint: None,
        }
    }
}

/// `PAX_LEDGER_*` variables that are not keys of the server: the client commands' (`addr`,
/// `token`, `output`, the TLS files, `append`'s `sign_key`, `witness serve`'s) and every
/// command's `log_format`.
/// A test keeps this list equal to the `env` names the command line declares.
pub const NOT_SERVER_KEYS: &[&str] = &[
    "addr",
    "token",
    "output",
    "ca_cert",
    "client_cert",
    "client_key",
    "sign_key",
    "log_format",
    "witness_data",
    "witness_listen",
];

/// One key of [`ServeConfig`], as its reference (README.md's configuration table, rendered by
/// [`reference_table`]) describes it. Its default is [`ServeConfig::default`]'s, and the range of
/// a numeric key is its [`RANGES`] entry's.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// The TOML key; upper-cased with the `PAX_LEDGER_` prefix, its environment variable.
    pub name: &'static str,
    /// The default in words, for a key whose default is no value (`none (plaintext)`) or one
    /// derived from another key; empty: the value of [`ServeConfig::default`].
    pub default: &'static str,
    /// What a value may be, for a key without a range in [`RANGES`] (`a path`).
    pub values: &'static str,
    /// What the key sets.
    pub description: &'static str,
}

/// Every key of [`ServeConfig`], in the order of its fields (a test keeps them equal), with
/// what the configuration reference says of it.
pub const KEYS: &[Key] = &[
    Key {
        name: "data",
        default: "",
        values: "a path",
        description: "the data directory (the sled database, `signing.key`, `ids.snapshot`, `head.journal`); also `serve --data`",
    },
    Key {
        name: "listen",
        default: "",
        values: "an address",
        description: "the address to serve gRPC on; a non-loopback one needs TLS and a principal, or `insecure = true` (see [Principals](#principals-roles-and-tokens)); also `serve --listen`",
    },
    Key {
        name: "metrics_listen",
        default: "none (not served)",
        values: "an address",
        description: "serve Prometheus metrics at `http://ADDR/metrics`, unauthenticated, on a port of their own (see Metrics below); also `serve --metrics-listen`",
    },
    Key {
        name: "insecure",
        default: "",
        values: "true or false",
        description: "allow a non-loopback `listen` address in plaintext, or while no principal exists; also `serve --insecure`",
    },
    Key {
        name: "cache_capacity_mib",
        default: "",
        values: "",
        description: "sled's page cache, in MiB (sled's own default is 1 GiB)",
    },
    Key {
        name: "append_queue_max",
        default: "",
        values: "",
        description: "append requests waiting for the writer before RESOURCE_EXHAUSTED",
    },
    Key {
        name: "group_events_max",
        default: "",
        values: "",
        description: "most events in one commit group (one sled batch, one fsync)",
    },
    Key {
        name: "stream_cache_max",
        default: "",
        values: "",
        description: "streams whose folded state the writer keeps in memory",
    },
    Key {
        name: "signing_key",
        default: "`<data>/signing.key`",
        values: "a path",
        description: "the Ed25519 key of checkpoints (created with mode 0600 on first start)",
    },
    Key {
        name: "checkpoint_every_events",
        default: "",
        values: "",
        description: "a signed checkpoint is issued after this many events, or after `checkpoint_every_secs`, whichever comes first",
    },
    Key {
        name: "checkpoint_every_secs",
        default: "",
        values: "",
        description: "a signed checkpoint is issued after this many seconds if the log grew, or after `checkpoint_every_events`, whichever comes first",
    },
    Key {
        name: "checkpoint_origin",
        default: "`pax-ledger/<key id>`",
        values: "no spaces or `+`",
        description: "the log's name: the first line of its checkpoint notes and its key's name (witnesses and auditors know the log by it: keep it once chosen)",
    },
    Key {
        name: "witnesses",
        default: "none",
        values: "`<witness verifier key>@http://HOST:PORT`, a list",
        description: "witnesses asked to cosign every checkpoint (also `serve --witness`, repeatable)",
    },
    Key {
        name: "id_snapshot_every_events",
        default: "",
        values: "",
        description: "how often the event-id index is snapshotted while serving (and at every clean stop): a start after a crash scans at most about this many records",
    },
    Key {
        name: "tls_cert",
        default: "none (plaintext)",
        values: "a PEM file",
        description: "serve TLS with this certificate chain, leaf first (with `tls_key`: both or neither); see [TLS](#tls); also `serve --tls-cert`",
    },
    Key {
        name: "tls_key",
        default: "none (plaintext)",
        values: "a PEM file",
        description: "the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1); also `serve --tls-key`",
    },
    Key {
        name: "tls_client_ca",
        default: "none",
        values: "a PEM file",
        description: "mutual TLS: clients must present a certificate signed by one of these CAs (needs `tls_cert`); also `serve --tls-client-ca`",
    },
    Key {
        name: "principal_requests_per_second",
        default: "",
        values: "",
        description: "requests one principal may make per second, sustained, with a one-second burst (0: no limit); beyond, RESOURCE_EXHAUSTED with `RetryInfo`",
    },
    Key {
        name: "principal_subscriptions_max",
        default: "",
        values: "",
        description: "subscriptions one principal may hold open (0: no limit)",
    },
    Key {
        name: "disk_free_min_mib",
        default: "",
        values: "",
        description: "appends are refused (RESOURCE_EXHAUSTED, reason DISK_FULL; health NOT_SERVING) while the data's file system has less free than this plus twice the commit group, and resume by themselves once space is freed (0: no check)",
    },
    Key {
        name: "otlp_endpoint",
        default: "none (not exported)",
        values: "a URL (`http://` or `https://`)",
        description: "export the server's tracing spans (each request's `rpc` span and those inside it) to this OpenTelemetry collector over OTLP/gRPC, in batches, with `service.name` `pax-ledger` (see Traces below); also `serve --otlp-endpoint`",
    },
];

/// The configuration reference, as README.md shows it between its `config-reference` markers:
/// a Markdown table with one row per key of [`KEYS`] — its name, its environment variable, its
/// default, the values it takes (a numeric key's range, as `serve` checks it) and what it sets.
pub fn reference_table() -> String {
    let defaults: std::collections::HashMap<String, serde_json::Value> =
        ServeConfig::default().entries().into_iter().collect();
    let mut table = String::from("| key | environment | default | values | what it sets |\n|---|---|---|---|---|\n");
    for key in KEYS {
        let default = match (key.default, &defaults[key.name]) {
            ("", serde_json::Value::String(text)) => format!("`{text}`"),
            ("", serde_json::Value::Null) => "none".to_owned(),
            ("", value) => spell_number(value),
            (words, _) => words.to_owned(),
        };
        let values = match RANGES.iter().find(|range| range.key == key.name) {
            Some(range) => format!("{}..={}", spell_u64(range.min), spell_u64(range.max)),
            None => key.values.to_owned(),
        };
        table.push_str(&format!(
            "| `{}` | `{}` | {default} | {values} | {} |\n",
            key.name,
            env_var(key.name),
            key.description
        ));
    }
    table
}

/// A JSON value of a default, as the reference shows it (a number as [`spell_u64`] does).
fn spell_number(value: &serde_json::Value) -> String {
    value.as_u64().map(spell_u64).unwrap_or_else(|| value.to_string())
}

/// `n`, with a power of ten of a million or more written as one (10⁶, 10¹²), so that a range
/// reads at a glance.
fn spell_u64(n: u64) -> String {
    const SUPERSCRIPTS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let text = n.to_string();
    let zeros = text.len() - 1;
    if n >= 1_000_000 && text.starts_with('1') && text[1..].bytes().all(|b| b == b'0') {
        let exponent: String = zeros.to_string().bytes().map(|d| SUPERSCRIPTS[usize::from(d - b'0')]).collect();
        format!("10{exponent}")
    } else {
        text
    }
}

/// Values given as command-line flags; `None` leaves the lower layers' value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witnesses: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key that cannot be read (wrong type, unknown key, unreadable file), as figment found it.
    #[error("configuration: {}", describe_figment_error(.0))]
    Figment(Box<figment::Error>),
    /// The file given with `--config` cannot be read.
    #[error("--config {}: {}", .0.display(), describe_io_error(.1))]
    File(PathBuf, std::io::Error),
    /// A key read well but outside the range it must lie in.
    #[error(
        "configuration: {key} ({env}) is {value}, but it must be in {min}..={max} ({what})",
        env = env_var(key)
    )]
    OutOfRange { key: &'static str, value: u64, min: u64, max: u64, what: &'static str },
    /// A path key given as the empty string.
    #[error("configuration: {key} ({env}) is empty; give a path", env = env_var(key))]
    EmptyPath { key: &'static str },
    #[error(
        "refusing to listen on {0} in plaintext: tokens (and, while no principal exists, anyone's requests) would cross the network unprotected; serve TLS (--tls-cert and --tls-key), or pass --insecure to open it anyway"
    )]
    NotLoopback(SocketAddr),
    /// One TLS key given without another it needs.
    #[error(
        "configuration: {key} ({env}) is set but {missing} ({missing_env}) is not; {why}",
        env = env_var(key),
        missing_env = env_var(missing)
    )]
    TlsIncomplete { key: &'static str, missing: &'static str, why: &'static str },
    /// A witness that is not `<verifier key>@<URL>`.
    #[error("configuration: witnesses: {0:?}: {1}")]
    Witness(String, String),
    /// An origin that cannot name a note's key.
    #[error(
        "configuration: checkpoint_origin ({env}) is {0:?}; it must be non-empty, without spaces or '+' (a schema-less URL such as ledger.example.org/pax-silica)",
        env = env_var("checkpoint_origin")
    )]
    Origin(String),
    /// An OTLP endpoint that is not an http:// or https:// URL.
    #[error(
        "configuration: otlp_endpoint ({env}) is {0:?}; give the collector's OTLP/gRPC URL, such as http://localhost:4317",
        env = env_var("otlp_endpoint")
    )]
    OtlpEndpoint(String),
    /// A TLS file that cannot be read, or does not hold what it must.
    #[error("configuration: {key} ({env}) {}: {why}", .path.display(), env = env_var(key))]
    TlsFile { key: &'static str, path: PathBuf, why: String },
}

/// Which layer gave a key its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Environment,
    Flag,
}

/// Where the keys came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origins {
    pub data: Origin,
    /// Every key of the configuration, in the order of [`ServeConfig`]'s fields, with the layer
    /// that gave its value.
    pub keys: Vec<(String, Origin)>,
}

impl Origin {
    /// Where `key`'s value came from, in words: `default`, `file ledger.toml`,
    /// `environment PAX_LEDGER_LISTEN`, `flag --listen`.
    pub fn source(&self, key: &str) -> String {
        match self {
            Self::Environment => format!("environment {}", env_var(key)),
            Self::Flag => format!("flag --{}", key.replace('_', "-")),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Environment => f.write_str("environment"),
            Self::Flag => f.write_str("flag"),
        }
    }
}

impl Origin {
    /// `key` = `value` as the user gave it: `--data /x/y`, `PAX_LEDGER_DATA=/x/y`,
    /// `data = "/x/y" in ledger.toml`, or `data (the default; choose another with --data)`
    /// (every key spelled here has a flag).
    pub fn spell(&self, key: &str, value: &dyn std::fmt::Display) -> String {
        match self {
            Self::Flag => format!("--{key} {value}"),
            Self::Environment => format!("{}={value}", env_var(key)),
            Self::File(path) => format!("{key} = \"{value}\" in {}", path.display()),
            Self::Default => format!("{value} (the default; choose another with --{key})"),
        }
    }
}

/// The environment variable of a key: `append_queue_max` is `PAX_LEDGER_APPEND_QUEUE_MAX`.
fn env_var(key: &str) -> String {
    format!("PAX_LEDGER_{}", key.to_ascii_uppercase())
}

/// The range a numeric key must lie in, and what it sets: checked once, after the layers
/// (defaults, file, environment, flags) are merged, so that whichever layer gave a value, it is
/// refused at start with its name rather than found later (an `append_queue_max` of 0 made the
/// writer's channel panic; a `group_events_max` of 0 was silently taken as "one request").
struct Range {
    key: &'static str,
    value: fn(&ServeConfig) -> u64,
    min: u64,
    max: u64,
    what: &'static str,
}

/// Every numeric key of [`ServeConfig`], with its range. The upper bounds are far beyond any
/// sensible value; they keep a typo (an extra digit or three) from becoming an allocation or an
/// overflow.
const RANGES: &[Range] = &[
    Range {
        key: "cache_capacity_mib",
        value: |c| c.cache_capacity_mib,
        min: 1,
        max: 1 << 20,
        what: "sled's page cache in MiB, at most 1 TiB",
    },
    Range {
        key: "append_queue_max",
        value: |c| c.append_queue_max as u64,
        min: 1,
        max: 1_000_000,
        what: "append requests waiting for the writer",
    },
    Range {
        key: "group_events_max",
        value: |c| c.group_events_max as u64,
        min: 1,
        max: 1_000_000,
        what: "events in one commit group",
    },
    Range {
        key: "stream_cache_max",
        value: |c| c.stream_cache_max as u64,
        min: 1,
        max: 100_000_000,
        what: "streams whose state the writer keeps in memory",
    },
    Range {
        key: "checkpoint_every_events",
        value: |c| c.checkpoint_every_events,
        min: 1,
        max: 1_000_000_000_000,
        what: "events between signed checkpoints",
    },
    Range {
        key: "checkpoint_every_secs",
        value: |c| c.checkpoint_every_secs,
        min: 1,
        max: 366 * 24 * 3600,
        what: "seconds between signed checkpoints, at most a year",
    },
    Range {
        key: "id_snapshot_every_events",
        value: |c| c.id_snapshot_every_events,
        min: 1,
        max: 1_000_000_000_000,
        what: "events between snapshots of the event-id index",
    },
    Range {
        key: "principal_requests_per_second",
        value: |c| u64::from(c.principal_requests_per_second),
        min: 0,
        max: 10_000_000,
        what: "requests per second per principal, 0 for no limit",
    },
    Range {
        key: "principal_subscriptions_max",
        value: |c| c.principal_subscriptions_max as u64,
        min: 0,
        max: 1_000_000,
        what: "open subscriptions per principal, 0 for no limit",
    },
    Range {
        key: "disk_free_min_mib",
        value: |c| c.disk_free_min_mib,
        min: 0,
        max: 1 << 20,
        what: "MiB left free on the data's file system before appends are refused, 0 for no check",
    },
];

/// figment's errors, one per key, each naming the key as a user spells it (the TOML key and
/// the environment variable) and where the value came from.
fn describe_figment_error(error: &figment::Error) -> String {
    let mut parts = Vec::new();
    for error in error.clone() {
        let key = match &error.kind {
            figment::error::Kind::UnknownField(field, _) => Some(field.clone()),
            _ if !error.path.is_empty() => Some(error.path.join(".")),
            _ => None,
        };
        let kind = match &error.kind {
            figment::error::Kind::UnknownField(_, known) => format!("unknown key; the keys are {}", known.join(", ")),
            figment::error::Kind::InvalidType(actual, expected)
            | figment::error::Kind::InvalidValue(actual, expected) => {
                format!("{actual} is not {}", readable_type(expected))
            }
            other => other.to_string(),
        };
        let source = error.metadata.as_ref().map(|metadata| match &metadata.source {
            Some(figment::Source::File(path)) => format!("in {}", path.display()),
            _ => format!("from {}", metadata.name.replace('`', "")),
        });
        let mut part = match key {
            Some(key) => format!("{key} ({}): {kind}", env_var(&key)),
            None => kind,
        };
        if let Some(source) = source {
            part = format!("{part} ({source})");
        }
        parts.push(part);
    }
    parts.join("; ")
}

/// What a PEM file must hold.
#[derive(Clone, Copy, Debug)]
pub enum Pem {
    /// One or more certificates.
    Certificates,
    /// A private key.
    PrivateKey,
}

/// The contents of the PEM file `path` (the value of `key`), checked to hold what it must.
fn read_pem(key: &'static str, path: &Path, what: Pem) -> Result<Vec<u8>, ConfigError> {
    let refused = |why: String| ConfigError::TlsFile { key, path: path.to_owned(), why };
    let text = std::fs::read(path).map_err(|e| refused(describe_io_error(&e)))?;
    check_pem(&text, what).map_err(refused)?;
    Ok(text)
}

/// Why `text` is not a PEM file holding `what`, in words (`holds no PEM certificate …`).
pub fn check_pem(text: &[u8], what: Pem) -> Result<(), String> {
    use rustls_pki_types::pem::{Error, PemObject};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let found = match what {
        Pem::Certificates => CertificateDer::pem_slice_iter(text)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|certs| if certs.is_empty() { Err(Error::NoItemsFound) } else { Ok(()) }),
        Pem::PrivateKey => PrivateKeyDer::from_pem_slice(text).map(drop),
    };
    found.map_err(|error| match (error, what) {
        (Error::NoItemsFound, Pem::Certificates) => {
            "holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block)".to_owned()
        }
        (Error::NoItemsFound, Pem::PrivateKey) => {
            "holds no PEM private key (a \"-----BEGIN PRIVATE KEY-----\" block: PKCS#8, or PKCS#1 or SEC1)".to_owned()
        }
        (error, _) => format!("is not valid PEM: {error}"),
    })
}

/// An error and its causes, each once, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let more = error.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = error.source();
    }
    text
}

/// An I/O error in words, without the OS's error number.
pub fn describe_io_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::IsADirectory => "is a directory, not a file".to_owned(),
        std::io::ErrorKind::NotADirectory => "a component of the path is not a directory".to_owned(),
        _ => error.to_string(),
    }
}

/// serde's name of an expected type, in words.
fn readable_type(expected: &str) -> String {
    match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number (0 or more)".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        other => other.to_owned(),
    }
}

impl ServeConfig {
    /// Layers the sources: defaults, then `file` (if given), then the environment, then flags.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, ConfigError> {
        Self::load_with_origins(file, flags).map(|(config, _)| config)
    }

    /// [`Self::load`], and where each key's value came from, so that a message about a value
    /// can name it as the user gave it.
    pub fn load_with_origins(file: Option<&Path>, flags: &FlagOverrides) -> Result<(Self, Origins), ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            // Read once here for a plain message; figment reads it again, naming it in its errors.
            std::fs::read_to_string(file).map_err(|e| ConfigError::File(file.to_owned(), e))?;
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("PAX_LEDGER_").ignore(NOT_SERVER_KEYS);
        let names = (env.metadata().name, Serialized::defaults(flags).metadata().name);
        let figment = figment.merge(env).merge(Serialized::defaults(flags));
        let config: Self = figment.extract().map_err(|e| ConfigError::Figment(Box::new(e)))?;
        config.validate()?;
        let origin = |key: &str| match figment.find_metadata(key) {
            Some(metadata) if metadata.name == names.1 => Origin::Flag,
            Some(metadata) if metadata.name == names.0 => Origin::Environment,
            Some(metadata) => match &metadata.source {
                Some(figment::Source::File(path)) => Origin::File(path.clone()),
                _ => Origin::Default,
            },
            None => Origin::Default,
        };
        let keys = config.entries().into_iter().map(|(key, _)| (key.clone(), origin(&key))).collect();
        let origins = Origins { data: origin("data"), keys };
        Ok((config, origins))
    }

    /// Every key and its value, in the order of [`KEYS`] (a key without a value, such as an
    /// unset `signing_key`, is `null`).
    pub fn entries(&self) -> Vec<(String, serde_json::Value)> {
        let values = serde_json::to_value(self).expect("the configuration serialises");
        KEYS.iter()
            .map(|key| (key.name.to_owned(), values.get(key.name).cloned().unwrap_or(serde_json::Value::Null)))
            .collect()
    }

    /// Checks every key against its range ([`RANGES`]), that paths are not empty, that a
    /// non-loopback address comes with TLS or `insecure`, and the TLS files ([`Self::tls`]): the one
    /// place a value is judged.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for range in RANGES {
            let value = (range.value)(self);
            if !(range.min..=range.max).contains(&value) {
                let Range { key, min, max, what, .. } = *range;
                return Err(ConfigError::OutOfRange { key, value, min, max, what });
            }
        }
        if self.data.as_os_str().is_empty() {
            return Err(ConfigError::EmptyPath { key: "data" });
        }
        let paths = [
            ("signing_key", &self.signing_key),
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("tls_client_ca", &self.tls_client_ca),
        ];
        if let Some((key, _)) = paths.iter().find(|(_, path)| path.as_ref().is_some_and(|p| p.as_os_str().is_empty())) {
            return Err(ConfigError::EmptyPath { key });
        }
        self.witness_endpoints()?;
        if let Some(origin) = &self.checkpoint_origin {
            crate::audit::note::check_key_name(origin).map_err(|_| ConfigError::Origin(origin.clone()))?;
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            let uri = endpoint.parse::<http::Uri>().ok();
            let scheme = uri.as_ref().and_then(|uri| uri.scheme_str());
            if !matches!(scheme, Some("http" | "https"))
                || uri.and_then(|uri| uri.host().map(str::len)).unwrap_or(0) == 0
            {
                return Err(ConfigError::OtlpEndpoint(endpoint.clone()));
            }
        }
        if !self.listen.ip().is_loopback() && !self.insecure && self.tls_cert.is_none() {
            return Err(ConfigError::NotLoopback(self.listen));
        }
        self.tls().map(drop)
    }

    /// The server's TLS, read from `tls_cert`, `tls_key` and `tls_client_ca` and checked: the
    /// certificate and its key both or neither (a client CA only with them); each file readable
    /// and holding, in PEM, what it must; the key that of the certificate, of a kind rustls
    /// signs with. `None`: plaintext.
    pub fn tls(&self) -> Result<Option<ServerTls>, ConfigError> {
        const NEEDS_BOTH: &str = "TLS needs both the certificate and its private key";
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(ConfigError::TlsIncomplete { key: "tls_cert", missing: "tls_key", why: NEEDS_BOTH });
            }
            (None, Some(_)) => {
                return Err(ConfigError::TlsIncomplete { key: "tls_key", missing: "tls_cert", why: NEEDS_BOTH });
            }
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(ConfigError::TlsIncomplete {
                    key: "tls_client_ca",
                    missing: "tls_cert",
                    why: "client certificates are asked for over TLS only: set tls_cert and tls_key too",
                });
            }
            (None, None) => return Ok(None),
        };
        let tls = ServerTls {
            cert_pem: read_pem("tls_cert", cert, Pem::Certificates)?,
            key_pem: read_pem("tls_key", key, Pem::PrivateKey)?,
            client_ca_pem: None,
        };
        // rustls checks that the key is the certificate's when it builds its configuration.
        tonic::transport::Server::builder().tls_config(tls.config()).map_err(|e| ConfigError::TlsFile {
            key: "tls_key",
            path: key.clone(),
            why: format!("does not go with tls_cert {}: {}", cert.display(), error_chain(&e)),
        })?;
        let Some(client_ca) = &self.tls_client_ca else { return Ok(Some(tls)) };
        let tls = ServerTls { client_ca_pem: Some(read_pem("tls_client_ca", client_ca, Pem::Certificates)?), ..tls };
        tonic::transport::Server::builder().tls_config(tls.config()).map_err(|e| ConfigError::TlsFile {
            key: "tls_client_ca",
            path: client_ca.clone(),
            why: format!("cannot be used to verify clients: {}", error_chain(&e)),
        })?;
        Ok(Some(tls))
    }

    /// The witnesses, parsed.
    pub fn witness_endpoints(&self) -> Result<Vec<crate::witness::WitnessEndpoint>, ConfigError> {
        self.witnesses
            .iter()
            .map(|text| {
                crate::witness::WitnessEndpoint::parse(text).map_err(|why| ConfigError::Witness(text.clone(), why))
            })
            .collect()
    }

    /// The per-principal limits of the server.
    pub fn access_limits(&self) -> AccessLimits {
        AccessLimits {
            requests_per_second: self.principal_requests_per_second,
            subscriptions_max: self.principal_subscriptions_max,
        }
    }

    pub fn ledger(&self) -> LedgerConfig {
        LedgerConfig {
            store: StoreConfig { cache_capacity_bytes: self.cache_capacity_mib * 1024 * 1024 },
            append_queue_max: self.append_queue_max,
            group_events_max: self.group_events_max,
            stream_cache_max: self.stream_cache_max,
            audit: crate::ledger::AuditConfig {
                signing_key: self.signing_key.clone(),
                checkpoint_every_events: self.checkpoint_every_events.max(1),
                checkpoint_every: std::time::Duration::from_secs(self.checkpoint_every_secs.max(1)),
                origin: self.checkpoint_origin.clone(),
            },
            id_snapshot_every_events: self.id_snapshot_every_events.max(1),
            disk_free_min_bytes: self.disk_free_min_mib * 1024 * 1024,
            ..LedgerConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_lists_every_key_of_the_configuration() {
        let every = ServeConfig {
            metrics_listen: Some("127.0.0.1:9464".parse().unwrap()),
            signing_key: Some("k".into()),
            checkpoint_origin: Some("o".into()),
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            tls_client_ca: Some("a".into()),
            otlp_endpoint: Some("http://localhost:4317".into()),
            ..ServeConfig::default()
        };
        let serialised: std::collections::BTreeSet<String> =
            serde_json::to_value(&every).unwrap().as_object().unwrap().keys().cloned().collect();
        let listed: std::collections::BTreeSet<String> = KEYS.iter().map(|k| k.name.to_owned()).collect();
        assert_eq!(serialised, listed);
        assert_eq!(every.entries().len(), KEYS.len());
        assert_eq!(ServeConfig::default().entries()[2], ("metrics_listen".to_owned(), serde_json::Value::Null));
    }

    /// Every key says what it sets and what values it takes (a range in [`RANGES`], or words),
    /// and a key with a range gives no words that the range would hide.
    #[test]
    fn every_key_is_described_for_the_reference() {
        for key in KEYS {
            assert!(!key.description.is_empty(), "{}: no description", key.name);
            let ranged = RANGES.iter().any(|range| range.key == key.name);
            assert!(ranged == key.values.is_empty(), "{}: a range and words, or neither", key.name);
        }
        assert_eq!(spell_u64(1_000_000_000_000), "10¹²");
        assert_eq!(spell_u64(1_048_576), "1048576");
        let table = reference_table();
        assert_eq!(table.lines().count(), 2 + KEYS.len());
        assert!(table.contains("| `append_queue_max` | `PAX_LEDGER_APPEND_QUEUE_MAX` | 4096 | 1..=10⁶ |"), "{table}");
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.toml");
        std::fs::write(&file, "data = \"/srv/ledger\"\nlisten = \"127.0.0.1:6000\"\ncache_capacity_mib = 32\n")
            .unwrap();
        let flags = FlagOverrides { listen: Some("127.0.0.1:7000".parse().unwrap()), ..Default::default() };
        let config = ServeConfig::load(Some(&file), &flags).unwrap();
        assert_eq!(config.data, PathBuf::from("/srv/ledger"));
        assert_eq!(config.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(config.cache_capacity_mib, 32);
    }

    /// Loads a TOML file holding `text` (and nothing else but the defaults).
    fn load_toml(text: &str) -> Result<ServeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.toml");
        std::fs::write(&file, text).unwrap();
        ServeConfig::load(Some(&file), &FlagOverrides::default())
    }

    /// `key` must accept exactly `min..=max`, and a value outside must be refused with a message
    /// naming the TOML key, the environment variable and the range.
    fn check_range(key: &str, min: u64, max: u64) {
        for accepted in [min, max] {
            if let Err(error) = load_toml(&format!("{key} = {accepted}")) {
                panic!("{key} = {accepted} was refused: {error}");
            }
        }
        let outside = [min.checked_sub(1), max.checked_add(1)];
        for refused in outside.into_iter().flatten() {
            let error = load_toml(&format!("{key} = {refused}")).expect_err(&format!("{key} = {refused}"));
            assert!(matches!(error, ConfigError::OutOfRange { .. }), "{key} = {refused}: {error:?}");
            let message = error.to_string();
            let env = format!("PAX_LEDGER_{}", key.to_uppercase());
            assert!(message.starts_with(&format!("configuration: {key} ({env}) is {refused}, ")), "{message}");
            assert!(message.contains(&format!("must be in {min}..={max}")), "{message}");
        }
    }

    macro_rules! range_tests {
        ($($key:ident: $min:literal ..= $max:literal;)*) => {
            $(
                #[test]
                fn $key() {
                    check_range(stringify!($key), $min, $max);
                }
            )*

            #[test]
            fn every_numeric_key_has_a_range_and_a_test() {
                let tested = [$(stringify!($key)),*];
                let ranged: Vec<&str> = RANGES.iter().map(|r| r.key).collect();
                assert_eq!(ranged, tested);
                let defaults = serde_json::to_value(ServeConfig::default()).unwrap();
                for (key, value) in defaults.as_object().unwrap() {
                    assert_eq!(value.is_number(), ranged.contains(&key.as_str()), "{key}");
                }
            }
        };
    }

    mod ranges {
        use super::*;

        range_tests! {
            cache_capacity_mib: 1 ..= 1048576;
            append_queue_max: 1 ..= 1000000;
            group_events_max: 1 ..= 1000000;
            stream_cache_max: 1 ..= 100000000;
            checkpoint_every_events: 1 ..= 1000000000000;
            checkpoint_every_secs: 1 ..= 31622400;
            id_snapshot_every_events: 1 ..= 1000000000000;
            principal_requests_per_second: 0 ..= 10000000;
            principal_subscriptions_max: 0 ..= 1000000;
            disk_free_min_mib: 0 ..= 1048576;
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        ServeConfig::default().validate().unwrap();
    }

    #[test]
    fn empty_paths_are_refused() {
        let error = load_toml("data = \"\"").unwrap_err();
        assert_eq!(error.to_string(), "configuration: data (PAX_LEDGER_DATA) is empty; give a path");
        let error = load_toml("signing_key = \"\"").unwrap_err();
        assert!(error.to_string().starts_with("configuration: signing_key (PAX_LEDGER_SIGNING_KEY) is empty"));
    }

    #[test]
    fn a_value_of_the_wrong_type_or_an_unknown_key_names_the_key_and_the_file() {
        let message = load_toml("append_queue_max = -1").unwrap_err().to_string();
        assert!(message.starts_with("configuration: append_queue_max (PAX_LEDGER_APPEND_QUEUE_MAX): "), "{message}");
        assert!(
            message.contains("-1") && message.contains("whole number") && message.contains("ledger.toml"),
            "{message}"
        );
        let message = load_toml("append_queue = 5").unwrap_err().to_string();
        assert!(
            message.starts_with("configuration: append_queue (PAX_LEDGER_APPEND_QUEUE): unknown key;"),
            "{message}"
        );
        assert!(message.contains("append_queue_max"), "{message}");
    }

    #[test]
    fn a_config_file_that_cannot_be_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let error = ServeConfig::load(Some(&missing), &FlagOverrides::default()).unwrap_err();
        assert_eq!(error.to_string(), format!("--config {}: no such file or directory", missing.display()));
        let error = ServeConfig::load(Some(dir.path()), &FlagOverrides::default()).unwrap_err();
        assert_eq!(error.to_string(), format!("--config {}: is a directory, not a file", dir.path().display()));
    }

    #[test]
    fn origins_say_which_layer_gave_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.toml");
        std::fs::write(&file, "data = \"/srv/ledger\"\n").unwrap();
        let (_, origins) = ServeConfig::load_with_origins(Some(&file), &FlagOverrides::default()).unwrap();
        assert_eq!(origins.data, Origin::File(file.clone()));
        let (_, origins) = ServeConfig::load_with_origins(None, &FlagOverrides::default()).unwrap();
        assert_eq!(origins.data, Origin::Default);
        let flags = FlagOverrides { data: Some("/x".into()), ..Default::default() };
        let (_, origins) = ServeConfig::load_with_origins(Some(&file), &flags).unwrap();
        assert_eq!(origins.data, Origin::Flag);
        assert_eq!(Origin::Flag.spell("data", &"/x"), "--data /x");
        assert_eq!(Origin::Environment.spell("data", &"/x"), "PAX_LEDGER_DATA=/x");
        assert_eq!(Origin::File("l.toml".into()).spell("data", &"/x"), "data = \"/x\" in l.toml");
        assert_eq!(Origin::Default.spell("data", &"data"), "data (the default; choose another with --data)");
    }

    /// The configuration of `flags`, or its error's text.
    fn check_tls(flags: FlagOverrides) -> Result<bool, String> {
        let config = ServeConfig::load(None, &flags).map_err(|e| e.to_string())?;
        Ok(config.tls().map_err(|e| e.to_string())?.is_some_and(|tls| tls.is_mutual()))
    }

    #[test]
    fn tls_files_are_both_or_neither_and_checked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let server = rcgen::generate_simple_self_signed(["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(["localhost".to_owned()]).unwrap();
        let cert = write("cert.pem", &server.cert.pem());
        let key = write("key.pem", &server.signing_key.serialize_pem());
        let other_key = write("other.key", &other.signing_key.serialize_pem());
        let tls = |cert: &PathBuf, key: &PathBuf, ca: Option<&PathBuf>| FlagOverrides {
            tls_cert: Some(cert.clone()),
            tls_key: Some(key.clone()),
            tls_client_ca: ca.cloned(),
            ..Default::default()
        };

        assert_eq!(check_tls(FlagOverrides::default()), Ok(false));
        assert_eq!(check_tls(tls(&cert, &key, None)), Ok(false));
        assert_eq!(check_tls(tls(&cert, &key, Some(&cert))), Ok(true));

        let error = check_tls(FlagOverrides { tls_cert: Some(cert.clone()), ..Default::default() }).unwrap_err();
        assert_eq!(
            error,
            "configuration: tls_cert (PAX_LEDGER_TLS_CERT) is set but tls_key (PAX_LEDGER_TLS_KEY) is not; TLS needs both the certificate and its private key"
        );
        let error = check_tls(FlagOverrides { tls_key: Some(key.clone()), ..Default::default() }).unwrap_err();
        assert!(error.starts_with("configuration: tls_key (PAX_LEDGER_TLS_KEY) is set but tls_cert"), "{error}");
        let error = check_tls(FlagOverrides { tls_client_ca: Some(cert.clone()), ..Default::default() }).unwrap_err();
        assert!(
            error.starts_with("configuration: tls_client_ca (PAX_LEDGER_TLS_CLIENT_CA) is set but tls_cert"),
            "{error}"
        );

        let missing = dir.path().join("missing.pem");
        let error = check_tls(tls(&missing, &key, None)).unwrap_err();
        assert_eq!(
            error,
            format!("configuration: tls_cert (PAX_LEDGER_TLS_CERT) {}: no such file or directory", missing.display())
        );
        let error = check_tls(tls(&key, &key, None)).unwrap_err();
        assert!(
            error.ends_with("key.pem: holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block)"),
            "{error}"
        );
        let error = check_tls(tls(&cert, &cert, None)).unwrap_err();
        assert!(error.starts_with("configuration: tls_key (PAX_LEDGER_TLS_KEY) "), "{error}");
        assert!(error.contains("holds no PEM private key"), "{error}");
        let error = check_tls(tls(&cert, &other_key, None)).unwrap_err();
        let expected = format!(
            "configuration: tls_key (PAX_LEDGER_TLS_KEY) {}: does not go with tls_cert {}: ",
            other_key.display(),
            cert.display()
        );
        assert!(error.starts_with(&expected), "{error}");
        let error = check_tls(tls(&cert, &key, Some(&key))).unwrap_err();
        assert!(error.starts_with("configuration: tls_client_ca (PAX_LEDGER_TLS_CLIENT_CA) "), "{error}");
        let garbled = write("garbled.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
        let error = check_tls(tls(&garbled, &key, None)).unwrap_err();
        assert!(error.contains("garbled.pem: is not valid PEM"), "{error}");
        let error = check_tls(tls(&PathBuf::new(), &key, None)).unwrap_err();
        assert!(error.starts_with("configuration: tls_cert (PAX_LEDGER_TLS_CERT) is empty"), "{error}");
    }

    #[test]
    fn an_otlp_endpoint_must_be_a_url() {
        for accepted in ["http://localhost:4317", "https://collector.example.org"] {
            let config = load_toml(&format!("otlp_endpoint = \"{accepted}\"")).unwrap();
            assert_eq!(config.otlp_endpoint.as_deref(), Some(accepted));
        }
        for refused in ["", "localhost:4317", "grpc://localhost:4317", "http://"] {
            let error = load_toml(&format!("otlp_endpoint = \"{refused}\"")).unwrap_err().to_string();
            assert!(error.starts_with("configuration: otlp_endpoint (PAX_LEDGER_OTLP_ENDPOINT) is "), "{error}");
        }
        assert_eq!(ServeConfig::default().otlp_endpoint, None);
    }

    #[test]
    fn a_public_address_needs_insecure() {
        let flags = FlagOverrides { listen: Some("0.0.0.0:50051".parse().unwrap()), ..Default::default() };
        assert!(matches!(ServeConfig::load(None, &flags), Err(ConfigError::NotLoopback(_))));
        let flags = FlagOverrides { insecure: Some(true), ..flags };
        assert!(ServeConfig::load(None, &flags).is_ok());
    }
}
