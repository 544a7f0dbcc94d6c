//! The latency of one durable write on this disk, the yardstick of issue 6's "latency at half of
//! peak" target: append a record-sized block to a file and `fdatasync` it, many times, and
//! report the percentiles (criterion reports means; the target is about the tail).
//!   cargo bench --bench fsync [-- SAMPLES]
//! The file lives under `target/` (the same disk as the data directories of the benchmarks).

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Instant;

fn main() {
    let samples: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let mut file = OpenOptions::new().create(true).append(true).open(dir.path().join("fsync.bin")).expect("a file");
    let block = [0x5au8; 512];
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("a histogram");
    for _ in 0..samples {
        let started = Instant::now();
        file.write_all(&block).expect("a write");
        file.sync_data().expect("fdatasync");
        histogram.record(started.elapsed().as_micros() as u64).expect("a sample");
    }
    println!(
        "{{\"what\":\"512-byte append + fdatasync\",\"samples\":{samples},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max()
    );
}
