//! Offline verification of a stopped ledger's data directory: every record decodes, sits at the
//! next position, and continues the hash chain, and the head names the last one.

use std::path::Path;
use std::time::Instant;

use super::LedgerError;
use crate::audit::{ChainVerifier, Hash};
use crate::domain::Position;
use crate::store::{Store, StoreConfig, StoreError};

/// What a verification found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Records that passed, from position 1.
    pub verified: u64,
    /// The last verified position and its chain hash.
    pub head: (u64, Hash),
    /// Where and why verification stopped, if it did: `(place, reason)`.
    pub failure: Option<(String, String)>,
    pub seconds: f64,
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Verifies the ledger in `dir`, which no server may have open. Opening runs the store's usual
/// recovery (it may remove records past the head that were never acknowledged). A failure of
/// the data is a verdict; only a failure to read at all is an error.
pub fn verify_store(dir: &Path, config: &StoreConfig) -> Result<Verdict, LedgerError> {
    if !dir.join("db").is_file() {
        return Err(LedgerError::NotFound(format!("no ledger in {}", dir.display())));
    }
    let started = Instant::now();
    let failed = |place: String, reason: String, chain: &ChainVerifier| Verdict {
        verified: chain.head().0,
        head: chain.head(),
        failure: Some((place, reason)),
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut chain = ChainVerifier::default();
    let store = match Store::open(dir, config) {
        Ok((store, _)) => store,
        Err(StoreError::Corrupt { place, reason }) => return Ok(failed(place, reason, &chain)),
        Err(e) => return Err(e.into()),
    };
    for record in store.scan_log(Position(1), true) {
        let record = match record {
            Ok(record) => record,
            Err(StoreError::Corrupt { place, reason }) => return Ok(failed(place, reason, &chain)),
            Err(e) => return Err(e.into()),
        };
        let position = record.event.position;
        if let Err(e) = chain.check(position.0, &record.hash, &record.body) {
            return Ok(failed(format!("position {position}"), e.to_string(), &chain));
        }
    }
    let head = store.head()?;
    if chain.head() != (head.position.0, head.hash) {
        let reason = format!("the head names position {} but the chain ends at {}", head.position, chain.head().0);
        return Ok(failed("log head".into(), reason, &chain));
    }
    Ok(Verdict {
        verified: chain.head().0,
        head: chain.head(),
        failure: None,
        seconds: started.elapsed().as_secs_f64(),
    })
}
