//! The JSON Lines event parser of `append` (`archive::event_line::parse`), on mutated seed lines
//! (values replaced by wrong types, extreme texts and numbers, deep and long arrays; keys
//! removed and added; bytes changed) and on random text.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use pax_ledger::archive::event_line;
use pax_ledger::domain::{Position, RecordedEvent, Revision};
use pax_ledger::service::convert;

use crate::alloc::{check_bounded, measure};
use crate::mutate::{json_mutated, mutated};
use crate::{fuzz, seeds};

const LINE: usize = 41;

/// A line is parsed or refused with its line number and a message, never a panic. A line the
/// server would accept survives the round trip through a history line (`history` output can be
/// appended again) unchanged.
fn check_line(text: &str) -> Result<(), TestCaseError> {
    let (parsed, usage) = measure(|| event_line::parse(LINE, text));
    check_bounded("event_line::parse", text.len(), usage)?;
    let line = match parsed {
        Ok(line) => line,
        Err(error) => {
            prop_assert_eq!(error.line, LINE);
            prop_assert!(!error.message.is_empty());
            let prefix = format!("line {LINE}: ");
            prop_assert!(error.to_string().starts_with(&prefix));
            return Ok(());
        }
    };
    let kind = line.event.data.as_ref().and_then(|data| data.kind.as_ref());
    prop_assert_eq!(&line.stream, &event_line::stream_of(kind.expect("a parsed line holds its data")));
    if let Some(expectation) = line.expectation() {
        prop_assert_eq!(&expectation.stream, &line.stream);
    }
    let Ok(event) = convert::proposed_event("event", &line.event) else { return Ok(()) };
    let recorded = RecordedEvent {
        position: Position(9),
        stream: event.data.stream(),
        revision: Revision(2),
        recorded_at: "2026-02-03T04:05:06.7Z".parse().expect("a time"),
        event,
    };
    let written = event_line::to_json(&convert::recorded_event_pb(&recorded));
    let again = event_line::parse(LINE, &written);
    let again = again.map_err(|e| TestCaseError::fail(format!("its history line {written} does not parse: {e}")))?;
    prop_assert_eq!(&again.stream, &recorded.stream.to_string());
    let reread = convert::proposed_event("event", &again.event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    // The history line states the effective time, which defaults to the recorded time.
    let mut expected = recorded.event.clone();
    expected.effective_at = Some(recorded.effective_at());
    prop_assert_eq!(reread, expected, "changed by the round trip through {}", written);
    Ok(())
}

fn seed_values() -> Vec<Value> {
    seeds::event_lines().iter().map(|line| serde_json::from_str(line).expect("a seed line is JSON")).collect()
}

fn hostile_lines() -> impl Strategy<Value = String> {
    let bytes = seeds::event_lines().into_iter().map(String::into_bytes).collect();
    prop_oneof![
        6 => json_mutated(seed_values()),
        3 => mutated(bytes).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        1 => "\\PC{0,200}",
    ]
}

#[test]
fn fuzz_event_lines() {
    fuzz("event lines", 3000, hostile_lines(), |text| check_line(&text));
}

#[test]
fn every_seed_line_round_trips() {
    for line in seeds::event_lines() {
        check_line(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}
