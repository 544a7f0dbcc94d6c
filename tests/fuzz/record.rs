//! The record body decoder (`read_body`, `decode_event`, `peek_stream_and_id`) and the chunk
//! framing (`ChunkLayout::parse` and record access), on mutated valid records and chunks and on
//! random bytes: what a damaged disk or a forged store hands the ledger.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use pax_ledger::store::chunk::ChunkLayout;
use pax_ledger::store::record::{self, RecordError};

use crate::alloc::{check_bounded, measure};
use crate::mutate::{hostile_bytes, length_like};
use crate::{fuzz, seeds};

/// What reading in place may allocate beyond nothing: an error's copy of a text of the input,
/// and a summit's date formatted to compare with its stream.
const IN_PLACE_SLACK: usize = 1024;

/// A body, read every way the store reads one: the three readers never panic and agree, and
/// what they accept is the canonical encoding of what it decodes to.
fn check_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (in_place, usage) = measure(|| record::read_body(bytes));
    prop_assert!(usage.peak <= bytes.len() + IN_PLACE_SLACK, "read_body allocated {usage:?} for {} bytes", bytes.len());
    let (decoded, usage) = measure(|| record::decode_event(bytes));
    check_bounded("decode_event", bytes.len(), usage)?;
    let (peeked, usage) = measure(|| record::peek_stream_and_id(bytes));
    prop_assert!(usage.peak <= IN_PLACE_SLACK, "peek_stream_and_id allocated {usage:?}");
    match (&in_place, &decoded) {
        (Ok(body), Ok(event)) => {
            prop_assert_eq!(&body.to_event().expect("read in place, so it decodes"), event);
            prop_assert_eq!(record::encode_event(event), bytes, "accepted bytes that are not canonical");
            let (stream, revision, event_id) = peeked.expect("a body read in place can be peeked");
            prop_assert_eq!((stream, revision, event_id), (body.stream.as_bytes(), body.revision, body.event_id));
        }
        (Err(refused), Err(failed)) => {
            prop_assert_eq!(format!("{refused:?}"), format!("{failed:?}"), "the readers disagree on why");
            let _: &RecordError = refused;
            prop_assert!(!refused.to_string().is_empty());
        }
        _ => prop_assert!(false, "read in place {:?} but decoded {:?}", in_place.is_ok(), decoded.is_ok()),
    }
    Ok(())
}

/// A chunk value, parsed as the store parses one and every record in it read: the framing never
/// panics, its bookkeeping stays within the value, and the records it locates tile it exactly.
fn check_chunk(value: &[u8]) -> Result<(), TestCaseError> {
    let (layout, usage) = measure(|| ChunkLayout::parse(value));
    prop_assert!(
        usage.peak <= value.len() + IN_PLACE_SLACK,
        "ChunkLayout::parse allocated {usage:?} for {} bytes",
        value.len()
    );
    let Ok(layout) = layout else { return Ok(()) };
    prop_assert!(!layout.is_empty());
    let mut framed = 1 + 4;
    for index in 0..layout.len() {
        let (_hash, body) = layout.record(value, index);
        framed += 4 + 32 + body.len();
        check_body(body)?;
    }
    prop_assert_eq!(framed, value.len(), "the records do not tile the chunk");
    Ok(())
}

#[test]
fn fuzz_record_bodies() {
    fuzz("record bodies", 8000, hostile_bytes(seeds::bodies()), |bytes| check_body(&bytes));
}

#[test]
fn fuzz_log_chunks() {
    fuzz("log chunks", 3000, hostile_bytes(seeds::chunks()), |bytes| check_chunk(&bytes));
}

/// Every `u32` of every seed that could be a length or a count, set to each huge value in
/// turn: refused, within the input's size.
#[test]
fn every_length_field_set_huge_is_refused_within_the_input() {
    for (seeds, check) in [(seeds::bodies(), check_body as fn(&[u8]) -> _), (seeds::chunks(), check_chunk)] {
        for seed in &seeds {
            for at in length_like(seed) {
                for huge in [u32::MAX, 0x8000_0000, 1 << 24] {
                    let mut bytes = seed.clone();
                    bytes[at..at + 4].copy_from_slice(&huge.to_be_bytes());
                    check(&bytes).unwrap_or_else(|e| panic!("offset {at} set to {huge:#x}: {e}"));
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Regressions: each input the harnesses found, minimal.

/// `ChunkLayout::parse` reserved room for the records a chunk's count claims before reading
/// any: 5 bytes claiming `u32::MAX` records asked for 128 GiB and aborted the process (a
/// damaged chunk must be reported as damage). Now bounded by what the value can hold.
#[test]
fn regression_chunk_count_claiming_u32_max_records() {
    check_chunk(&[1, 0xff, 0xff, 0xff, 0xff]).unwrap();
}
