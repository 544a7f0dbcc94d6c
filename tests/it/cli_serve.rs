//! `serve` refusing to start, end to end: the real binary with a bad configuration, a data
//! path that cannot be a directory, or an address in use must exit non-zero with a message
//! that says what is wrong (no panic, no backtrace, no raw OS message), and touch nothing.

use std::process::Output;

use crate::support::*;

/// `serve ARGS` with `env`, to its end (it must refuse to start), backtraces enabled so that
/// one would show.
async fn serve_refused(args: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut command = pax_ledger(&all);
    command.env("RUST_BACKTRACE", "1").envs(env.iter().copied());
    let output = run_to_end(command, b"").await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "serve {args:?} with {env:?} started: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    (output, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_setting_is_refused_by_name_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cases = [
        ("PAX_LEDGER_APPEND_QUEUE_MAX", "append_queue_max (PAX_LEDGER_APPEND_QUEUE_MAX) is 0, but it must be in 1..="),
        ("PAX_LEDGER_GROUP_EVENTS_MAX", "group_events_max (PAX_LEDGER_GROUP_EVENTS_MAX) is 0, but it must be in 1..="),
    ];
    for (variable, message) in cases {
        let (_, stderr) = serve_refused(&["--data", data, "--listen", "127.0.0.1:0"], &[(variable, "0")]).await;
        assert!(stderr.contains(message), "{stderr}");
        assert!(!std::path::Path::new(data).exists(), "the data directory was created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_path_that_is_a_file_is_named_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger");
    std::fs::write(&file, "not a directory").unwrap();
    let file = file.to_str().unwrap();
    let (_, stderr) = serve_refused(&["--data", file, "--listen", "127.0.0.1:0"], &[]).await;
    assert!(stderr.starts_with(&format!("error: --data {file}: is a file, not a directory;")), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");

    let below = format!("{file}/data");
    let (_, stderr) = serve_refused(&["--listen", "127.0.0.1:0"], &[("PAX_LEDGER_DATA", &below)]).await;
    let expected = format!("error: PAX_LEDGER_DATA={below}: {file} is a file, not a directory;");
    assert!(stderr.starts_with(&expected), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_is_said_so_and_no_data_directory_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, stderr) = serve_refused(&["--data", data.to_str().unwrap(), "--listen", &addr], &[]).await;
    let expected = format!("error: cannot listen on {addr}: address in use (is another pax-ledger running?");
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!data.exists(), "the data directory was created before the bind failed");
    drop(taken);
}
