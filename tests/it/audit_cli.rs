//! The auditor's commands, run as the real binary: `key public`, `export` → `verify --bundle` →
//! `import`, `checkpoint --save`, and the careful attacker — one who rewrites a stopped ledger
//! with a consistent hash chain (removing records, or changing one and re-hashing from there).
//! The chain alone cannot catch them; a checkpoint saved before can, offline
//! (`verify --data --checkpoint`) and online (`verify --against`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::Utc;
use pax_ledger::audit::checkpoint::{Checkpoint, SignedCheckpoint};
use pax_ledger::audit::merkle::{MemoryNodeSource, tree_root};
use pax_ledger::audit::{Hash, chain_hash, keys};
use pax_ledger::domain::{EventData, Position};
use pax_ledger::store::{CommitBatch, Head, Store, StoreConfig, StoredRecord, record};
use serde_json::Value;

use crate::support::*;

// ------------------------------------------------------------------------------------------
// Running the binary

pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) lines: Vec<Value>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn pax(args: &[&str]) -> Run {
    let Output { status, stdout, stderr } =
        Command::new(env!("CARGO_BIN_EXE_pax-ledger")).args(args).output().expect("run pax-ledger");
    let stdout = String::from_utf8(stdout).unwrap();
    let lines = stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    Run { ok: status.success(), lines, stdout, stderr: String::from_utf8(stderr).unwrap() }
}

impl Run {
    /// The last JSON line (the verdict or summary).
    pub(crate) fn last(&self) -> &Value {
        self.lines.last().unwrap_or_else(|| panic!("no JSON line; stdout {:?}, stderr {:?}", self.stdout, self.stderr))
    }

    pub(crate) fn expect_ok(self) -> Self {
        assert!(self.ok, "expected success; stdout {:?}, stderr {:?}", self.stdout, self.stderr);
        self
    }

    pub(crate) fn expect_failed(self, at: &str, reason: &str) -> Self {
        assert!(!self.ok, "expected a failure; stdout {:?}", self.stdout);
        let verdict = self.last();
        assert_eq!(verdict["verdict"], "failed", "{verdict}");
        assert_eq!(verdict["at"], at, "{verdict}");
        assert!(verdict["reason"].as_str().unwrap().contains(reason), "{verdict}");
        self
    }
}

pub(crate) fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ------------------------------------------------------------------------------------------
// Ledgers, checkpoints and attackers

/// Appends `count` member joins, 10 per request, with codes from `first` on.
async fn append_joins(server: &TestServer, first: u64, count: u64) {
    let mut client = server.client().await;
    let code = |i: u64| format!("A{}{}", (b'A' + (i / 26) as u8) as char, (b'A' + (i % 26) as u8) as char);
    for start in (first..first + count).step_by(10) {
        let events = (start..(start + 10).min(first + count)).map(|i| member_joined(&code(i))).collect();
        client.append(append(events)).await.unwrap();
    }
}

/// A running ledger of `events` member joins in `dir`.
async fn ledger_in(dir: &Path, events: u64) -> TestServer {
    let server = TestServer::start_in(dir).await;
    append_joins(&server, 0, events).await;
    server
}

/// Every record of a stopped ledger, in log order.
fn records(dir: &Path) -> Vec<StoredRecord> {
    let (store, _) = Store::open(dir, &StoreConfig::default()).unwrap();
    store.scan_log(Position(1), true).collect::<Result<_, _>>().unwrap()
}

/// The head and the Merkle root of a stopped ledger, recomputed from its chain hashes.
fn head_and_root(dir: &Path) -> (Head, Hash) {
    let (store, _) = Store::open(dir, &StoreConfig::default()).unwrap();
    let head = store.head().unwrap();
    let hashes = store.chain_hashes(Position(1), head.position).unwrap();
    (head, tree_root(head.position.0, &MemoryNodeSource::new(&hashes)).unwrap())
}

/// A checkpoint of a stopped ledger's first `position` records, signed offline with the key in
/// its directory, saved to `file`.
fn sign_offline(dir: &Path, position: u64, file: &Path) -> SignedCheckpoint {
    let key = keys::load_or_generate(&dir.join("signing.key")).unwrap();
    let hashes: Vec<Hash> = records(dir).iter().take(position as usize).map(|r| r.hash).collect();
    let root = tree_root(position, &MemoryNodeSource::new(&hashes)).unwrap();
    let origin = format!("pax-ledger/{}", keys::key_id(&key.verifying_key()));
    let signed =
        Checkpoint { position, root, view_digest: None, view_tree: None, time: Utc::now() }.sign(&origin, &key);
    fs::write(file, signed.to_json()).unwrap();
    signed
}

/// The careful attacker: replaces the stopped ledger in `dir` by one holding `records`, with a
/// hash chain recomputed from the first record whose body changed, and no stored checkpoint. The
/// signing key stays, so a server started on it signs with the ledger's own key.
fn forge(dir: &Path, records: &[(pax_ledger::domain::RecordedEvent, Vec<u8>)]) {
    let key = fs::read(dir.join("signing.key")).unwrap();
    fs::remove_dir_all(dir).unwrap();
    let (store, _) = Store::open(dir, &StoreConfig::default()).unwrap();
    let mut batch = CommitBatch::default();
    let mut head = Head::EMPTY;
    for (event, body) in records {
        let hash = chain_hash(&head.hash, body);
        batch.put_record(event, body.clone(), &hash);
        head = Head { position: event.position, hash };
    }
    batch.set_head(&head);
    store.commit(batch).unwrap();
    drop(store);
    fs::write(dir.join("signing.key"), key).unwrap();
    fs::set_permissions(dir.join("signing.key"), fs::Permissions::from_mode(0o600)).unwrap();
}

type Forged = Vec<(pax_ledger::domain::RecordedEvent, Vec<u8>)>;

/// The events and bodies of a stopped ledger, to forge from.
fn original(dir: &Path) -> Forged {
    records(dir).into_iter().map(|record| (record.event, record.body)).collect()
}

/// `records` with the member joined at `position` given another name.
fn renamed(records: &Forged, position: u64) -> Forged {
    let mut records = records.clone();
    let (event, body) = &mut records[position as usize - 1];
    let EventData::MemberJoined { name, .. } = &mut event.event.data else { panic!("a join") };
    *name = "Someone Else".into();
    *body = record::encode_event(event);
    records
}

/// A bundle's lines, to change them.
pub(crate) fn bundle_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

pub(crate) fn write_lines(path: &Path, lines: &[Value]) {
    fs::write(path, lines.iter().map(|line| line.to_string() + "\n").collect::<String>()).unwrap();
}

struct Paths {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    root: PathBuf,
}

fn paths() -> Paths {
    let tmp = tempfile::tempdir().unwrap();
    Paths { data: tmp.path().join("data"), root: tmp.path().to_owned(), _tmp: tmp }
}

impl Paths {
    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

// ------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_verify_import_round_trips() {
    let p = paths();
    let server = ledger_in(&p.data, 30).await;
    let saved = p.file("at-30.json");
    let made = pax(&["checkpoint", "--save", s(&saved), "--addr", &server.url, "--output", "json"]).expect_ok();
    assert_eq!(made.last()["position"], 30);
    // The file is the signed note; the JSON line spells it out, with the key a note does not name.
    let checkpoint = SignedCheckpoint::from_json(&made.last().to_string()).unwrap();
    let note = fs::read_to_string(&saved).unwrap();
    assert_eq!(made.last()["note"], note.as_str());
    assert_eq!(SignedCheckpoint::from_file_text(&note, Some(&checkpoint.public_key)).unwrap(), checkpoint);
    assert_eq!(serde_json::to_value(&checkpoint).unwrap(), *made.last());
    // A saved checkpoint is evidence: it is not overwritten by accident.
    let again = pax(&["checkpoint", "--save", s(&saved), "--addr", &server.url]);
    assert!(!again.ok && again.stderr.contains("already exists"), "{}", again.stderr);
    append_joins(&server, 30, 5).await;
    server.stop().await;

    // `key public` names the key that signed the checkpoint.
    let key = pax(&["key", "public", "--data", s(&p.data), "--output", "json"]).expect_ok();
    assert_eq!(key.last()["public_key"], keys::public_key_hex(&checkpoint.public_key));
    assert_eq!(key.last()["key_id"], checkpoint.key_id());
    let table = pax(&["key", "public", "--key", s(&p.data.join("signing.key"))]).expect_ok();
    assert!(table.stdout.contains(&checkpoint.key_id()), "{}", table.stdout);
    let public_key = keys::public_key_hex(&checkpoint.public_key);

    let bundle = p.file("ledger.jsonl");
    let exported = pax(&["export", "--data", s(&p.data), "--to", s(&bundle), "--output", "json"]).expect_ok();
    assert_eq!((exported.last()["records"].as_u64(), exported.last()["checkpoints"].as_u64()), (Some(35), Some(1)));
    let lines = bundle_lines(&bundle);
    assert_eq!(lines.len(), 1 + 35 + 1);
    assert_eq!(lines[0]["format"], "pax-ledger bundle v2");
    assert_eq!(lines[0]["checkpoints"], serde_json::json!([30]));
    assert_eq!(lines[7]["event"]["type"], "member_joined");
    assert_eq!(lines[36]["checkpoint"]["root"], serde_json::to_value(&checkpoint).unwrap()["root"]);
    let refused = pax(&["export", "--data", s(&p.data), "--to", s(&bundle)]);
    assert!(!refused.ok && refused.stderr.contains("--force"), "{}", refused.stderr);
    pax(&["export", "--data", s(&p.data), "--to", s(&bundle), "--force"]).expect_ok();

    let verified = pax(&["verify", "--bundle", s(&bundle), "--output", "json"]).expect_ok();
    assert_eq!(verified.last()["verdict"], "ok");
    assert_eq!(verified.last()["position"], 35);
    assert_eq!(verified.last()["signer_pinned"], false);
    let table = pax(&["verify", "--bundle", s(&bundle)]).expect_ok();
    assert!(table.stdout.contains("not pinned"), "{}", table.stdout);
    let pinned = pax(&["verify", "--bundle", s(&bundle), "--public-key", &public_key, "--output", "json"]).expect_ok();
    assert_eq!(pinned.last()["signer_pinned"], true);

    // Import into an absent directory: the same log, the same root, the checkpoint, no key.
    let imported_dir = p.file("imported");
    pax(&["import", "--bundle", s(&bundle), "--data", s(&imported_dir), "--output", "json"]).expect_ok();
    assert_eq!(head_and_root(&imported_dir), head_and_root(&p.data));
    assert!(!imported_dir.join("signing.key").exists(), "no signing key is copied");
    let (store, _) = Store::open(&imported_dir, &StoreConfig::default()).unwrap();
    let stored = store.checkpoint(Position(30)).unwrap().expect("the checkpoint is imported");
    assert_eq!(SignedCheckpoint::from_json(std::str::from_utf8(&stored).unwrap()).unwrap(), checkpoint);
    drop(store);
    pax(&["verify", "--data", s(&imported_dir), "--checkpoint", s(&saved), "--public-key", &public_key]).expect_ok();

    // Into an existing empty directory too; never into one that holds anything.
    let empty = p.file("empty");
    fs::create_dir(&empty).unwrap();
    pax(&["import", "--bundle", s(&bundle), "--data", s(&empty)]).expect_ok();
    let before = fs::read_dir(&p.data).unwrap().count();
    let refused = pax(&["import", "--bundle", s(&bundle), "--data", s(&p.data)]);
    assert!(!refused.ok && refused.stderr.contains("not empty"), "{}", refused.stderr);
    assert_eq!(fs::read_dir(&p.data).unwrap().count(), before);

    // The imported ledger serves, under a key of its own: the saved checkpoint cannot be
    // vouched for by it online (offline, above, it still can), pinned or not.
    let server = TestServer::start_in(&imported_dir).await;
    assert_eq!(head_position(&mut server.client().await).await, 35);
    pax(&["verify", "--against", s(&saved), "--addr", &server.url, "--output", "json"])
        .expect_failed("checkpoint at position 30", "not signed by the ledger's current key");
    pax(&["verify", "--against", s(&saved), "--addr", &server.url, "--public-key", &public_key, "--output", "json"])
        .expect_failed("checkpoint at position 30", "nothing it signs can vouch for the saved checkpoint");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_of_a_bundle_is_named_and_refused_by_import() {
    let p = paths();
    ledger_in(&p.data, 12).await.stop().await;
    let bundle = p.file("ledger.jsonl");
    pax(&["export", "--data", s(&p.data), "--to", s(&bundle)]).expect_ok();
    let mut lines = bundle_lines(&bundle);
    // One byte of the body of position 7: "Participant" becomes "Qarticipant".
    let body = lines[7]["body"].as_str().unwrap().to_owned();
    assert!(body.contains("5061727469"), "the member name is in the body");
    lines[7]["body"] = body.replacen("5061727469", "5161727469", 1).into();
    let changed = p.file("changed.jsonl");
    write_lines(&changed, &lines);
    let failed = pax(&["verify", "--bundle", s(&changed), "--output", "json"])
        .expect_failed("position 7", "chain hash does not match");
    assert_eq!(failed.last()["verified_up_to"], 6);
    let table = pax(&["verify", "--bundle", s(&changed)]);
    assert!(!table.ok && table.stdout.starts_with("FAILED at position 7:"), "{}", table.stdout);

    let target = p.file("imported");
    pax(&["import", "--bundle", s(&changed), "--data", s(&target), "--output", "json"])
        .expect_failed("position 7", "chain hash");
    assert!(!target.exists(), "a refused import leaves nothing behind");
    assert_eq!(fs::read_dir(&p.root).unwrap().count(), 3, "no staging directory is left either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_signed_by_another_key_fails_when_the_key_is_pinned() {
    let p = paths();
    let server = ledger_in(&p.data, 10).await;
    pax(&["checkpoint", "--addr", &server.url]).expect_ok();
    server.stop().await;
    let ledger_key = keys::load(&p.data.join("signing.key")).unwrap().verifying_key();
    let bundle = p.file("ledger.jsonl");
    pax(&["export", "--data", s(&p.data), "--to", s(&bundle)]).expect_ok();

    // The same statement (position, root, time), signed by a key of the attacker's.
    let mut lines = bundle_lines(&bundle);
    let last = lines.len() - 1;
    let genuine: SignedCheckpoint = serde_json::from_value(lines[last]["checkpoint"].clone()).unwrap();
    let other = keys::load_or_generate(&p.file("other.key")).unwrap();
    lines[last]["checkpoint"] =
        serde_json::to_value(genuine.checkpoint.clone().sign(genuine.origin().unwrap(), &other)).unwrap();
    let forged = p.file("forged.jsonl");
    write_lines(&forged, &lines);

    // Unpinned, each checkpoint only has to match the key it carries, and the output says so.
    let unpinned = pax(&["verify", "--bundle", s(&forged)]).expect_ok();
    assert!(unpinned.stdout.contains(&keys::key_id(&other.verifying_key())), "{}", unpinned.stdout);
    assert!(unpinned.stdout.contains("not pinned"), "{}", unpinned.stdout);
    let public_key = keys::public_key_hex(&ledger_key);
    pax(&["verify", "--bundle", s(&forged), "--public-key", &public_key, "--output", "json"])
        .expect_failed("checkpoint at position 10", "not by the pinned key");
    // --public-key may name a file holding the key.
    let key_file = p.file("ledger.pub");
    fs::write(&key_file, format!("{public_key}\n")).unwrap();
    pax(&["verify", "--bundle", s(&forged), "--public-key", s(&key_file), "--output", "json"])
        .expect_failed("checkpoint at position 10", "not by the pinned key");
    pax(&["verify", "--bundle", s(&bundle), "--public-key", s(&key_file)]).expect_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_careful_attacker_passes_the_chain_check_but_not_a_saved_checkpoint() {
    let p = paths();
    ledger_in(&p.data, 30).await.stop().await;
    let at_30 = p.file("at-30.json");
    let at_20 = p.file("at-20.json");
    sign_offline(&p.data, 30, &at_30);
    sign_offline(&p.data, 20, &at_20);
    let public_key = keys::public_key_hex(&keys::load(&p.data.join("signing.key")).unwrap().verifying_key());
    let with = |checkpoint: &Path| {
        pax(&[
            "verify",
            "--data",
            s(&p.data),
            "--checkpoint",
            s(checkpoint),
            "--public-key",
            &public_key,
            "--output",
            "json",
        ])
    };
    let intact = with(&at_30).expect_ok();
    assert_eq!(intact.lines.len(), 2, "the chain verdict, then the checkpoint's");
    assert_eq!(intact.lines[0]["position"], 30);
    assert_eq!(intact.last()["verdict"], "ok");
    let original = original(&p.data);

    // (a) The last 5 records removed, the head rewritten to match.
    forge(&p.data, &original[..25]);
    let chain = pax(&["verify", "--data", s(&p.data), "--output", "json"]).expect_ok();
    assert_eq!(chain.last()["position"], 25);
    with(&at_30).expect_failed("checkpoint at position 30", "records were removed");
    with(&at_20).expect_ok();

    // (b) Record 27 says something else, and the chain is re-hashed from it.
    forge(&p.data, &renamed(&original, 27));
    pax(&["verify", "--data", s(&p.data)]).expect_ok();
    let failed = with(&at_30).expect_failed("checkpoint at position 30", "history up to position 30 was rewritten");
    assert_eq!(failed.lines[0]["verdict"], "ok", "the chain itself holds");
    let table = pax(&["verify", "--data", s(&p.data), "--checkpoint", s(&at_30)]);
    assert!(!table.ok, "{}", table.stdout);
    assert!(
        table.stdout.contains(
            "FAILED: the log no longer extends the checkpoint at position 30: the history up to position 30 was \
             rewritten"
        ),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("ok: 30 events verified"), "today's line comes first: {}", table.stdout);
    // A checkpoint before the rewrite still holds: it covers nothing that changed.
    with(&at_20).expect_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_against_a_running_ledger_catches_the_careful_attacker() {
    let p = paths();
    let server = ledger_in(&p.data, 30).await;
    let saved = p.file("at-30.json");
    pax(&["checkpoint", "--save", s(&saved), "--addr", &server.url]).expect_ok();
    let against = |url: &str| pax(&["verify", "--against", s(&saved), "--addr", url, "--output", "json"]);
    let same = against(&server.url).expect_ok();
    assert_eq!(same.last()["position"], 30);
    append_joins(&server, 30, 5).await;
    let grown = against(&server.url).expect_ok();
    assert_eq!((grown.last()["checkpoint_position"].as_u64(), grown.last()["position"].as_u64()), (Some(30), Some(35)));
    let table = pax(&["verify", "--against", s(&saved), "--addr", &server.url]).expect_ok();
    assert!(table.stdout.starts_with("ok: the ledger extends the checkpoint at position 30"), "{}", table.stdout);
    server.stop().await;
    let original = original(&p.data);

    // (a) Records removed below the checkpoint.
    forge(&p.data, &original[..25]);
    let server = TestServer::start_in(&p.data).await;
    against(&server.url).expect_failed("checkpoint at position 30", "records were removed");
    server.stop().await;

    // (b) Record 27 rewritten, the chain re-hashed, the ledger signing with its own key.
    forge(&p.data, &renamed(&original, 27));
    pax(&["verify", "--data", s(&p.data)]).expect_ok();
    let server = TestServer::start_in(&p.data).await;
    let failed = against(&server.url).expect_failed("checkpoint at position 30", "no longer extends the checkpoint");
    assert!(failed.last()["reason"].as_str().unwrap().contains("rewritten"), "{}", failed.last());
    let table = pax(&["verify", "--against", s(&saved), "--addr", &server.url]);
    assert!(
        !table.ok && table.stdout.contains("the ledger no longer extends the checkpoint at position 30"),
        "{}",
        table.stdout
    );
    server.stop().await;
}

#[test]
fn key_public_explains_a_missing_or_open_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = pax(&["key", "public", "--data", s(dir.path())]);
    assert!(!missing.ok && missing.stderr.contains("no signing key"), "{}", missing.stderr);
    let path = dir.path().join("signing.key");
    keys::load_or_generate(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let open = pax(&["key", "public", "--key", s(&path)]);
    assert!(!open.ok && open.stderr.contains("chmod 600"), "{}", open.stderr);
}

#[test]
fn verify_takes_exactly_one_source() {
    let none = pax(&["verify"]);
    assert!(!none.ok && none.stderr.contains("--data"), "{}", none.stderr);
    let two = pax(&["verify", "--data", "x", "--bundle", "y"]);
    assert!(!two.ok && two.stderr.contains("cannot be used with"), "{}", two.stderr);
    let unpinnable = pax(&["verify", "--data", "x", "--public-key", &"00".repeat(32)]);
    assert!(!unpinnable.ok && unpinnable.stderr.contains("--checkpoint"), "{}", unpinnable.stderr);
}

/// A ledger with principals: the admin (bootstrapped), `jp` holding `delegate:JP`, and a member
/// joined by the admin. Returns the position of the join.
async fn ledger_with_principals(dir: &Path) -> u64 {
    use pax_ledger::domain::{Grant, PrincipalName, ProposedEvent};
    use pax_ledger::ledger::{AppendRequest, Caller, Ledger, LedgerConfig};
    let path = dir.to_owned();
    let ledger =
        tokio::task::spawn_blocking(move || Ledger::open(&path, LedgerConfig::default())).await.unwrap().unwrap();
    let admin = PrincipalName::parse("name", "admin").unwrap();
    ledger.bootstrap(&admin).await.unwrap();
    let as_admin = |data| AppendRequest { events: vec![ProposedEvent::new(data)], expectations: Vec::new() };
    let jp = EventData::AccessGranted {
        principal: PrincipalName::parse("name", "jp").unwrap(),
        grants: vec![Grant::parse("grant", "delegate:JP").unwrap()],
        reason: String::new(),
    };
    ledger.append_as(Caller::Principal(admin.clone()), as_admin(jp)).await.unwrap();
    let joined = pax_ledger::service::convert::proposed_event("e", &member_joined("JP")).unwrap();
    let request =
        AppendRequest { events: vec![ProposedEvent { metadata: Default::default(), ..joined }], expectations: vec![] };
    let outcome = ledger.append_as(Caller::Principal(admin), request).await.unwrap();
    tokio::task::spawn_blocking(move || ledger.shutdown()).await.unwrap();
    outcome.events[0].position.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_data_checks_that_each_record_was_made_by_a_principal_allowed_to() {
    let p = paths();
    let joined = ledger_with_principals(&p.data).await;
    let ok = pax(&["verify", "--data", s(&p.data), "--output", "json"]).expect_ok();
    assert_eq!(ok.last()["authorship_checked"], joined, "every record since the first access event");
    let table = pax(&["verify", "--data", s(&p.data)]).expect_ok();
    assert!(
        table.stdout.contains(&format!("authorship: {joined} records recorded by a principal allowed to")),
        "{}",
        table.stdout
    );

    // The careful attacker: the join is said to be jp's, and the chain re-hashed from it.
    let mut records = original(&p.data);
    let (event, body) = &mut records[joined as usize - 1];
    event.event.metadata.actor = "jp".into();
    *body = record::encode_event(event);
    forge(&p.data, &records);
    pax(&["verify", "--data", s(&p.data), "--output", "json"]).expect_failed(
        &format!("position {joined}"),
        "member_joined recorded by principal jp, who held delegate:JP then",
    );
}

// ------------------------------------------------------------------------------------------
// The upgrade from format-1 checkpoints (a BLAKE3 tree, a 110-byte message)

/// A ledger written by the build before checkpoints were notes (`tests/fixtures/make-format-1.sh`
/// made it with that build's binary): ~3,000 events, a format-1 checkpoint saved by its
/// `checkpoint --save`, more events after it, a clean stop.
fn format_1_fixture(p: &Paths) -> (PathBuf, PathBuf) {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1-ledger.tar.gz");
    let status = Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(p.file("")).status().expect("tar");
    assert!(status.success(), "unpacking {}", archive.display());
    (p.file("format-1/data"), p.file("format-1/checkpoint.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_of_format_1_is_upgraded_on_open_and_its_old_checkpoints_still_verify() {
    use pax_ledger::audit::checkpoint::TreeKind;
    use pax_ledger::audit::merkle::{self, Blake3Tree, MerkleFrontier};
    use pax_ledger::store::{CheckpointSpace, TREE_FORMAT};

    let p = paths();
    let (data, saved) = format_1_fixture(&p);
    let old = SignedCheckpoint::from_json(&fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(old.tree(), TreeKind::Blake3);
    let (head_before, root_before) = {
        let (store, _) = Store::open(&data, &StoreConfig::default()).unwrap();
        assert_eq!(store.tree_format().unwrap(), 1, "the fixture is of format 1");
        assert!(store.latest_checkpoint(CheckpointSpace::Notes).unwrap().is_none());
        let head = store.head().unwrap();
        let hashes = store.chain_hashes(Position(1), head.position).unwrap();
        let mut frontier = MerkleFrontier::<Blake3Tree>::default();
        hashes[..old.checkpoint.position as usize].iter().for_each(|hash| frontier.append(hash));
        assert_eq!(frontier.root(), old.checkpoint.root, "the saved checkpoint signed the BLAKE3 root");
        (head, tree_root(head.position.0, &MemoryNodeSource::new(&hashes)).unwrap())
    };
    assert!(head_before.position.0 > old.checkpoint.position && head_before.position.0 > 2_048);
    // Before the upgrade, offline: the log extends the format-1 checkpoint.
    pax(&["verify", "--data", s(&data), "--checkpoint", s(&saved)]).expect_ok();

    // Opening upgrades: the subtree roots are SHA-256 ones, the first note is signed at once.
    let server = TestServer::start_in(&data).await;
    let mut audit = pax_ledger::proto::v1::audit_service_client::AuditServiceClient::new(server.channel().await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.ledger.checkpoint_positions().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no note signed after the upgrade");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(server.ledger.checkpoint_positions().unwrap(), [head_before.position]);
    assert_eq!(server.ledger.merkle_root(head_before.position.0).unwrap(), root_before);
    let latest = server.ledger.latest_checkpoint().unwrap();
    assert_eq!((latest.tree(), latest.checkpoint.root), (TreeKind::Sha256, root_before));
    let proof = audit
        .get_inclusion_proof(pax_ledger::proto::v1::GetInclusionProofRequest {
            target: Some(pax_ledger::proto::v1::get_inclusion_proof_request::Target::Position(1_500)),
            tree_size: head_before.position.0,
        })
        .await
        .unwrap()
        .into_inner();
    let hashes: Vec<Hash> = proof.proof.iter().map(|hash| hash.as_slice().try_into().unwrap()).collect();
    merkle::verify_inclusion(
        &proof.record_hash.try_into().unwrap(),
        1_499,
        head_before.position.0,
        &hashes,
        &root_before,
    )
    .expect("an inclusion proof of the upgraded tree verifies");
    // The live verification checks both forms: the old checkpoint and the new note.
    let verdict = crate::audit_server::verify(&mut audit).await;
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!(verdict.checkpoints_verified, 2, "{verdict:?}");
    append_joins(&server, 0, 20).await;
    // Online, a format-1 file cannot be proven in the new tree: the command says how instead.
    pax(&["verify", "--against", s(&saved), "--addr", &server.url, "--output", "json"])
        .expect_failed(&format!("checkpoint at position {}", old.checkpoint.position), "verify --data");
    server.stop().await;

    let (store, _) = Store::open(&data, &StoreConfig::default()).unwrap();
    assert_eq!(store.tree_format().unwrap(), TREE_FORMAT);
    assert_eq!(store.checkpoints(CheckpointSpace::Format1).count(), 1, "the old checkpoint is kept");
    // The note signed after the upgrade, and the one of the clean stop.
    let notes: Vec<u64> = store.checkpoints(CheckpointSpace::Notes).map(|entry| entry.unwrap().0.0).collect();
    assert_eq!(notes, [head_before.position.0, head_before.position.0 + 20]);
    drop(store);
    // Offline after the upgrade: the chain, the checkpoints of both forms, the old file, a bundle.
    let verified = pax(&["verify", "--data", s(&data), "--output", "json"]).expect_ok();
    assert_eq!(verified.lines[0]["checkpoints_verified"], 3);
    pax(&["verify", "--data", s(&data), "--checkpoint", s(&saved)]).expect_ok();
    let bundle = p.file("upgraded.jsonl");
    pax(&["export", "--data", s(&data), "--to", s(&bundle)]).expect_ok();
    let lines = bundle_lines(&bundle);
    assert_eq!(lines[0]["format_1_checkpoints"], serde_json::json!([old.checkpoint.position]));
    assert_eq!(lines[0]["checkpoints"], serde_json::json!(notes));
    let public_key = keys::public_key_hex(&old.public_key);
    let checked = pax(&["verify", "--bundle", s(&bundle), "--public-key", &public_key, "--output", "json"]).expect_ok();
    assert_eq!(checked.last()["checkpoints"], 3);
    let copy = p.file("copy");
    pax(&["import", "--bundle", s(&bundle), "--data", s(&copy)]).expect_ok();
    pax(&["verify", "--data", s(&copy), "--checkpoint", s(&saved), "--public-key", &public_key]).expect_ok();
    // A forged root in the old checkpoint is still caught after the upgrade.
    let mut forged = lines.clone();
    let at = forged.iter().position(|line| line["checkpoint"]["position"] == old.checkpoint.position).unwrap();
    forged[at]["checkpoint"]["root"] = "00".repeat(32).into();
    let forged_file = p.file("forged.jsonl");
    write_lines(&forged_file, &forged);
    pax(&["verify", "--bundle", s(&forged_file), "--output", "json"])
        .expect_failed(&format!("checkpoint at position {}", old.checkpoint.position), "not the Merkle root");
}
