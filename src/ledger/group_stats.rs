//! What the writer's commit groups looked like: how many events and requests each took, and
//! where its time went (checking, sled's `apply_batch`, its `flush`, the `fdatasync`), as HDR
//! histograms. The writer logs them when it stops, and a group slower than
//! [`SLOW_GROUP`] on its own line, with its phases: the way to tell a stall of the disk from
//! one of sled's lock or of the checks.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::store::CommitTimings;

/// A group that took longer than this, from its first check to its sync, is logged alone.
pub const SLOW_GROUP: Duration = Duration::from_millis(50);

/// One group: its size and its phases.
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupSample {
    pub requests: u64,
    pub events: u64,
    pub check: Duration,
    pub commit: CommitTimings,
}

impl GroupSample {
    pub fn total(&self) -> Duration {
        self.check + self.commit.apply + self.commit.flush + self.commit.sync
    }
}

/// Told of every durable commit group, on the writer's thread, after its sync: how an exporter
/// of metrics (outside the ledger) learns of groups without the ledger knowing of it. It must
/// return at once (no I/O, no lock held long).
pub trait GroupObserver: Send + Sync {
    fn group_committed(&self, sample: &GroupSample);
}

/// The observer a ledger is opened with, if any (`LedgerConfig::observer`).
#[derive(Clone, Default)]
pub struct ObserverHandle(pub Option<std::sync::Arc<dyn GroupObserver>>);

impl fmt::Debug for ObserverHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "ObserverHandle(Some(..))" } else { "ObserverHandle(None)" })
    }
}

/// The histograms of every group written since the writer started.
pub struct GroupStats {
    pub requests: Histogram<u64>,
    pub events: Histogram<u64>,
    /// Microseconds.
    pub check: Histogram<u64>,
    pub apply: Histogram<u64>,
    pub flush: Histogram<u64>,
    pub sync: Histogram<u64>,
    pub total: Histogram<u64>,
}

impl Default for GroupStats {
    fn default() -> Self {
        // Three significant digits, up to an hour in microseconds: ≈ 40 KiB each.
        let histogram = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds and precision");
        Self {
            requests: histogram(),
            events: histogram(),
            check: histogram(),
            apply: histogram(),
            flush: histogram(),
            sync: histogram(),
            total: histogram(),
        }
    }
}

impl GroupStats {
    pub fn record(&mut self, sample: &GroupSample) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.requests.saturating_record(sample.requests);
        self.events.saturating_record(sample.events);
        self.check.saturating_record(micros(sample.check));
        self.apply.saturating_record(micros(sample.commit.apply));
        self.flush.saturating_record(micros(sample.commit.flush));
        self.sync.saturating_record(micros(sample.commit.sync));
        self.total.saturating_record(micros(sample.total()));
    }

    pub fn groups(&self) -> u64 {
        self.total.len()
    }
}

/// `p50/p99/max` of one histogram.
struct Spread<'h>(&'h Histogram<u64>);

impl fmt::Display for Spread<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.0;
        write!(f, "{}/{}/{}", h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    }
}

impl fmt::Display for GroupStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} groups (p50/p99/max): events {}, requests {}; µs: check {}, apply {}, flush {}, fdatasync {}, total {}",
            self.groups(),
            Spread(&self.events),
            Spread(&self.requests),
            Spread(&self.check),
            Spread(&self.apply),
            Spread(&self.flush),
            Spread(&self.sync),
            Spread(&self.total),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_sizes_and_phases() {
        let mut stats = GroupStats::default();
        for events in 1..=100u64 {
            let commit = CommitTimings {
                apply: Duration::from_micros(10 * events),
                flush: Duration::from_micros(20),
                sync: Duration::from_micros(300),
            };
            let sample = GroupSample { requests: events, events, check: Duration::from_micros(5), commit };
            assert_eq!(sample.total(), Duration::from_micros(10 * events + 325));
            stats.record(&sample);
        }
        assert_eq!(stats.groups(), 100);
        assert_eq!(stats.events.value_at_quantile(0.5), 50);
        assert_eq!(stats.events.max(), 100);
        assert_eq!(stats.apply.max(), 1000);
        assert_eq!(stats.sync.value_at_quantile(0.99), 300);
        assert_eq!(stats.total.min(), 335);
        let line = stats.to_string();
        assert!(line.starts_with("100 groups"), "{line}");
        assert!(line.contains("events 50/99/100"), "{line}");
        assert!(line.contains("fdatasync 300/300/300"), "{line}");
        // A stall far beyond the first buckets is kept, not clamped.
        let stall = CommitTimings { sync: Duration::from_secs(2), ..CommitTimings::default() };
        stats.record(&GroupSample { requests: 1, events: 1, check: Duration::ZERO, commit: stall });
        assert!(stats.sync.equivalent(stats.sync.max(), 2_000_000), "{}", stats.sync.max());
    }
}
