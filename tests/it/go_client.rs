//! The Go client of `examples/go`, run against the real binary: `examples/go/build.sh` builds it
//! offline from Debian's Go, grpc-go and protobuf packages (installing them if missing; CI runs
//! it up front, here again, which is quick once done) with stubs generated from `proto/`. The
//! client appends an illustrative participant, reads it back, lists the members and verifies
//! the checkpoint's signed note with `crypto/ed25519`; with `-flip` it must also refuse the
//! checkpoint after one flipped bit, of the note's text or of its signature.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use pax_ledger::proto::v1 as pb;

use crate::crash::{ServerProcess, connect};
use crate::support::{BINARY_TIMEOUT, text};

/// Builds the client (`examples/go/build.sh`); its path.
async fn build() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = tokio::process::Command::new("bash")
        .arg(root.join("examples/go/build.sh"))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run examples/go/build.sh");
    assert!(built.status.success(), "examples/go/build.sh failed:\n{}{}", text(&built.stdout), text(&built.stderr));
    PathBuf::from(text(&built.stdout).trim_end())
}

/// Runs the client with `args` to its end, with no `PAX_LEDGER_*` variable inherited.
async fn run(client: &Path, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(client);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PAX_LEDGER_") {
            command.env_remove(key);
        }
    }
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(BINARY_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the Go client did not end within {BINARY_TIMEOUT:?}"))
        .expect("run the Go client")
}

#[tokio::test]
async fn the_go_client_runs_against_the_real_server_and_refuses_a_flipped_bit() {
    let client = build().await;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &dir.path().join("serve.stderr")).await;
    let address = server.url.strip_prefix("http://").unwrap().to_owned();

    let run1 = run(&client, &[&address]).await;
    let stdout = text(&run1.stdout);
    assert!(run1.status.success(), "the Go client failed ({}):\n{stdout}{}", run1.status, text(&run1.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let event_id = lines[0].strip_prefix("appended ").and_then(|rest| rest.split(' ').next()).unwrap_or_default();
    assert!(lines[0].ends_with(" at position 1 in member-ZZ"), "{stdout}");
    assert!(lines[1].starts_with("read back: member_joined of ZZ recorded "), "{stdout}");
    assert_eq!(lines[2], "1 participants: ZZ");
    assert!(lines[3].starts_with("checkpoint at position 1 verifies under pax-ledger/"), "{stdout}");

    // What it appended, as the server recorded it: its member, labelled illustrative.
    let recorded = connect(&server.url)
        .await
        .get_event(pb::GetEventRequest { event_id: event_id.to_owned() })
        .await
        .unwrap_or_else(|e| panic!("GetEvent {event_id:?}: {e}"))
        .into_inner();
    let Some(pb::event_data::Kind::MemberJoined(joined)) = recorded.data.and_then(|data| data.kind) else {
        panic!("not a member joining: {event_id}");
    };
    assert_eq!((joined.code.as_str(), recorded.stream.as_str()), ("ZZ", "member-ZZ"));
    assert_eq!(recorded.metadata.unwrap().labels.get("illustrative").map(String::as_str), Some("true"));

    // One flipped bit, of the note's tree size or of the log's signature: the genuine note still
    // verifies, the flipped one is refused, and the client exits 1.
    for (code, flip) in [("ZY", "text"), ("ZX", "signature")] {
        let flipped = run(&client, &["-code", code, "-flip", flip, &address]).await;
        let stdout = text(&flipped.stdout);
        assert_eq!(flipped.status.code(), Some(1), "-flip {flip}:\n{stdout}{}", text(&flipped.stderr));
        assert!(stdout.contains(&format!(" in member-{code}\n")), "{stdout}");
        assert!(stdout.contains(" verifies under pax-ledger/"), "{stdout}");
        assert!(stdout.ends_with(&format!("\nwith one bit of its {flip} flipped, it DOES NOT verify\n")), "{stdout}");
    }

    let pid = server.pid();
    assert!(server.terminate(pid).await.success());
}
