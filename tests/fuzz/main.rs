//! Fuzz harnesses for every decoder of hostile input, on stable Rust: proptest strategies of
//! valid inputs mutated (bit flips, truncations, splices, length fields set huge) and of random
//! bytes, driven into the record decoder and the chunk framing (`record`), the JSON Lines event
//! parser (`event_line`), the bundle verifier (`bundle`) and the wire → domain conversions and
//! request handlers (`convert`). Each checks that nothing panics, that every refusal is the
//! layer's own typed error, and that memory stays bounded by the input (`alloc`).
//!
//! A binary of its own, not a module of `tests/it`: its counting global allocator would
//! otherwise sit under every integration test.
//!
//! Each harness runs its default number of cases (the whole set in well under a minute, in a
//! debug build); `PAX_FUZZ_CASES=N` runs N cases of each instead and prints the rate
//! (BENCHMARKS.md has the long-run command). A failure prints the minimal input proptest found;
//! each one found so far is a named regression test beside its harness.

mod alloc;
mod bundle;
mod convert;
mod event_line;
mod mutate;
mod record;
mod seeds;

use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The number of cases a harness runs: `PAX_FUZZ_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    match std::env::var("PAX_FUZZ_CASES") {
        Ok(raw) => raw.parse().unwrap_or_else(|_| panic!("PAX_FUZZ_CASES={raw:?} is not a number of cases")),
        Err(_) => default,
    }
}

/// Runs `test` on `cases(default)` inputs drawn from `strategy`, and panics with the minimal
/// failing input if one fails. With `PAX_FUZZ_CASES` set, prints the number of cases and their
/// rate.
fn fuzz<S: Strategy>(name: &str, default: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let cases = cases(default);
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() };
    let started = Instant::now();
    let outcome = TestRunner::new(config).run(&strategy, test);
    if std::env::var_os("PAX_FUZZ_CASES").is_some() {
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => {
                eprintln!("fuzz {name}: {cases} cases in {seconds:.1} s ({:.0} cases/s)", f64::from(cases) / seconds)
            }
            Err(_) => eprintln!("fuzz {name}: failed after {seconds:.1} s, shrinking included"),
        }
    }
    if let Err(error) = outcome {
        panic!("fuzz {name}: {error}");
    }
}
