//! Server configuration: flags > environment (`PAX_LEDGER_*`) > optional TOML file > defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::ledger::LedgerConfig;
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
    /// Allow listening on a non-loopback address without authentication.
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
    /// Save the event-id index's snapshot every this many events (and at a clean stop): a
    /// start after a crash scans at most about this many records.
    pub id_snapshot_every_events: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let ledger = LedgerConfig::default();
        Self {
            data: PathBuf::from("data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            insecure: false,
            cache_capacity_mib: ledger.store.cache_capacity_bytes / (1024 * 1024),
            append_queue_max: ledger.append_queue_max,
            group_events_max: ledger.group_events_max,
            stream_cache_max: ledger.stream_cache_max,
            signing_key: None,
            checkpoint_every_events: ledger.audit.checkpoint_every_events,
            checkpoint_every_secs: ledger.audit.checkpoint_every.as_secs(),
            id_snapshot_every_events: ledger.id_snapshot_every_events,
        }
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
    pub insecure: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    #[error(
        "refusing to listen on {0} without authentication: no token is configured, so only a loopback address is allowed; pass --insecure to open it anyway"
    )]
    NotLoopback(SocketAddr),
}

impl ServeConfig {
    /// Layers the sources: defaults, then `file` (if given), then the environment, then flags.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Self = figment
            .merge(Env::prefixed("PAX_LEDGER_").ignore(&["addr", "token", "output"]))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)?;
        if !config.listen.ip().is_loopback() && !config.insecure {
            return Err(ConfigError::NotLoopback(config.listen));
        }
        Ok(config)
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
            },
            id_snapshot_every_events: self.id_snapshot_every_events.max(1),
            ..LedgerConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_public_address_needs_insecure() {
        let flags = FlagOverrides { listen: Some("0.0.0.0:50051".parse().unwrap()), ..Default::default() };
        assert!(matches!(ServeConfig::load(None, &flags), Err(ConfigError::NotLoopback(_))));
        let flags = FlagOverrides { insecure: Some(true), ..flags };
        assert!(ServeConfig::load(None, &flags).is_ok());
    }
}
