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

/// `config print` shows each key's value and where it came from, and refuses what `serve`
/// would refuse, naming it.
#[test]
fn config_print_names_each_key_s_value_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.toml");
    std::fs::write(&file, "append_queue_max = 77\n").unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pax-ledger"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PAX_LEDGER_") {
                command.env_remove(key);
            }
        }
        command.args(["config", "print", "--output", "json", "--config"]).arg(&file).envs(envs.iter().copied());
        command.output().unwrap()
    };
    let output = run(&[("PAX_LEDGER_GROUP_EVENTS_MAX", "500")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let line = |key: &str| lines.iter().find(|l| l["key"] == key).unwrap_or_else(|| panic!("no {key}")).clone();
    assert_eq!(line("append_queue_max")["value"], 77);
    assert_eq!(line("append_queue_max")["source"], format!("file {}", file.display()));
    assert_eq!(line("group_events_max")["value"], 500);
    assert_eq!(line("group_events_max")["source"], "environment PAX_LEDGER_GROUP_EVENTS_MAX");
    assert_eq!(line("listen")["source"], "default");
    assert_eq!(line("metrics_listen")["value"], serde_json::Value::Null);
    assert_eq!(lines.len(), pax_ledger::config::KEYS.len());
    let refused = run(&[("PAX_LEDGER_APPEND_QUEUE_MAXX", "1")]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("append_queue_maxx (PAX_LEDGER_APPEND_QUEUE_MAXX): unknown key")
    );
}

/// The completion scripts name the commands and parse in their shell (bash, checked with
/// `bash -n`); the manual page is roff with the commands in it.
#[test]
fn completions_and_the_manual_page_cover_the_commands() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pax-ledger")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        for command in ["serve", "append", "prove", "register-key", "verify"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
        if shell == "bash" {
            let file = dir.path().join("pax-ledger.bash");
            std::fs::write(&file, &script).unwrap();
            let checked = std::process::Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
        }
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH pax-ledger 1"), "{}", &man[..man.len().min(300)]);
    for command in ["serve", "verify", "prove"] {
        assert!(man.contains(command), "the manual page names {command}");
    }
}
