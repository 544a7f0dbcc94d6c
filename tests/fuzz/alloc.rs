//! A global allocator that counts, on the thread that asks, what one call allocates: how much is
//! live at its peak and the largest single request. It is what lets the harnesses check that a
//! decoder's memory is bounded by its input, whatever lengths the input claims.
//!
//! The one `unsafe` of the test suite: a `GlobalAlloc` cannot be written without it. It forwards
//! every call to `System` unchanged and only adds to thread-local counters (const-initialised,
//! without a destructor, so that reading them never allocates).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

#[global_allocator]
static COUNTING: Counting = Counting;

#[derive(Clone, Copy, Debug, Default)]
struct Meter {
    live: isize,
    peak: isize,
    largest: usize,
}

thread_local! {
    /// `Some` while [`measure`] runs on this thread.
    static METER: Cell<Option<Meter>> = const { Cell::new(None) };
}

fn count(allocated: usize, freed: usize) {
    let _ = METER.try_with(|cell| {
        if let Some(mut meter) = cell.get() {
            meter.live += allocated as isize - freed as isize;
            meter.peak = meter.peak.max(meter.live);
            meter.largest = meter.largest.max(allocated);
            cell.set(Some(meter));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counting
// touches only a thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, layout.size());
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What one call allocated on its thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The most bytes it held at once (what it returns included).
    pub peak: usize,
    /// Its largest single request.
    pub largest: usize,
}

/// Runs `f`, counting what it allocates on this thread.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    METER.with(|cell| {
        assert!(cell.get().is_none(), "measure does not nest");
        cell.set(Some(Meter::default()));
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let meter = METER.with(|cell| cell.take()).expect("set above");
    let value = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    (value, Usage { peak: meter.peak.max(0) as usize, largest: meter.largest })
}

/// How much a decoder may hold for an input of `input` bytes: a constant for errors and small
/// fixed structures, plus a multiple of the input for what it builds from it (a JSON value tree
/// costs a few dozen bytes per input byte at worst). A length field believed (a 4 GiB text or
/// list announced by a few bytes) is far beyond it.
pub fn budget(input: usize) -> usize {
    const PER_INPUT_BYTE: usize = 128;
    const FIXED: usize = 1 << 20;
    FIXED + PER_INPUT_BYTE * input
}

/// Fails (the harness then shrinks the input) when `usage` is beyond `budget(input)`.
pub fn check_bounded(what: &str, input: usize, usage: Usage) -> Result<(), proptest::test_runner::TestCaseError> {
    proptest::prop_assert!(
        usage.peak <= budget(input),
        "{what} held {} bytes at its peak for {input} bytes of input (largest request {})",
        usage.peak,
        usage.largest
    );
    Ok(())
}
