//! README.md, run: every shell transcript in it is played, in order, against the real binary
//! and a fresh server, and what each command prints must be what the README shows; and the
//! README's configuration reference must be the one `config::reference_table` renders.
//!
//! # What is a transcript
//!
//! A fenced block (```` ``` ```` at the start of a line, any info string) with at least one line
//! that starts with `$ `. Each `$ ` line is a command, run by `bash` in a scratch directory (the
//! README's working directory: `examples/` is the repository's, `data` is the server's data
//! directory); a command continues on the next line after a trailing `\`, and through the end
//! of a here-document (`<<'LINE'` … `LINE`). The lines after it, up to the next `$ ` line, are
//! what it prints, stdout and stderr together, as a terminal shows them; blank lines at the
//! end of that output are not part of it. `pax-ledger` is the binary of this build, and
//! `PAX_LEDGER_ADDR` points at the test's server. Blocks without a `$ ` line (a command to copy,
//! an error message quoted) are not run. Transcripts are played in the README's order, as one
//! session: files they write stay for the next ones, `$?` is the previous command's status, and
//! a `PAX_LEDGER_*` variable a command exports (`export PAX_LEDGER_TOKEN=…`) is set for the
//! commands after it.
//!
//! A transcript that cannot run here (a second terminal following the log until Ctrl-C, a
//! server stopped in the middle of a command, files made with openssl, a server with other
//! options) carries [`NOT_RUN`] in its info string (```` ```console not-run ````), and the line
//! before its fence must be an HTML comment saying why ([`NOT_RUN_WHY`]`… -->`).
//!
//! # The server
//!
//! A fresh `pax-ledger serve` over `data` in the scratch directory, on 127.0.0.1:0. The tour
//! stops it with Ctrl-C before it reads a stopped server's directory, and starts it again on
//! the same directory when it talks to it next; the test does the same: before a command that
//! opens the data directory itself ([`NEEDS_STOPPED`]) it stops the server with SIGINT (which
//! must exit 0), and before any other `pax-ledger` command, except those that work without a
//! server ([`OFFLINE`]), it starts it if it is stopped. A transcript's `$ pax-ledger serve &`
//! ([`START_SERVER`]) starts it too; any other `serve` must be in a transcript that is not run.
//! After each command, the test waits for the views to catch up with the log, as they have by
//! the time a reader types the next one.
//!
//! # Comparing
//!
//! Both sides, the README's lines and the command's, are normalised by [`RULES`] (what
//! legitimately differs from one run to the next), then compared line by line, exactly, spaces
//! included (trailing spaces aside). In the README's lines, `…` is an elision: a line that is
//! only `…` (optionally followed by spaces and a parenthesised remark) stands for any number of
//! lines, none included; a `…` within a line stands for any text within that line. Everything
//! else must match: counts, positions, revisions, column widths, messages, the event ids.
//!
//! A README whose expected output is wrong fails with the README's line, the command, and both
//! outputs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::crash::{ServerProcess, send_signal};
use crate::support::BINARY_TIMEOUT;

/// The README, as the repository holds it.
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The info-string word that marks a transcript that is not run.
const NOT_RUN: &str = "not-run";
/// How the line before a transcript that is not run starts: the comment that says why.
const NOT_RUN_WHY: &str = "<!-- not run by tests/it/readme.rs: ";

/// Commands that open the data directory themselves: the server must be stopped first.
const NEEDS_STOPPED: &[&str] = &["pax-ledger verify --data", "pax-ledger export", "pax-ledger principal bootstrap"];

/// The one `serve` a transcript may hold (a trailing `# remark` aside): "start the server
/// again", which the test does its own way (on `data`, at 127.0.0.1:0), printing nothing.
const START_SERVER: &str = "pax-ledger serve &";

/// Commands that need no server (they read files only): they neither stop nor start it.
const OFFLINE: &[&str] = &[
    "pax-ledger verify --bundle",
    "pax-ledger verify --view-proof",
    "pax-ledger verify --backup",
    "pax-ledger restore",
    "pax-ledger import",
    "pax-ledger key",
    "pax-ledger config",
    "pax-ledger completions",
    "pax-ledger man",
];

/// A normalisation rule: what it replaces, in words, and the function that does it on one line.
type Rule = (&'static str, fn(&str) -> String);

/// What legitimately differs between two runs, replaced by a placeholder on both sides before
/// they are compared, in this order (after trailing spaces are dropped and the scratch
/// directory's path is made `<dir>`). Anything else is compared as written: a number that is
/// not one of these (a count, a position, a revision, an exit status), a word, a column's width.
const RULES: &[Rule] = &[
    ("timestamps (RFC 3339, UTC, any fraction; recorded and effective times alike) -> <time>", normalise_timestamps),
    (
        "runs of 40 or more base64 characters, `=` padding included (hashes, roots, public keys, signatures) -> <digest>",
        normalise_digests,
    ),
    (
        "runs of 8 or more lowercase hex digits, not part of a UUID or a word (key ids, abbreviated hashes) -> <hex>",
        normalise_hex,
    ),
    ("durations: a decimal number followed by ` s` -> <secs> s", normalise_durations),
    ("rates and sizes: rebuild's `seconds` and `events_per_sec` values, `(N bytes)` -> <n>", normalise_measures),
];

/// One command of a transcript and what it prints.
#[derive(Debug)]
struct Step {
    /// The README's line of the `$ `.
    line: usize,
    command: String,
    expected: Vec<String>,
}

#[derive(Debug)]
struct Transcript {
    /// The README's line of the opening fence.
    line: usize,
    run: bool,
    steps: Vec<Step>,
}

/// Every transcript of `readme`, in order.
fn transcripts(readme: &str) -> Vec<Transcript> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let open = i;
        let end = (open + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .unwrap_or_else(|| panic!("README.md:{}: a fence that is never closed", open + 1));
        let body = &lines[open + 1..end];
        i = end + 1;
        if !body.iter().any(|line| line.starts_with("$ ")) {
            continue;
        }
        let run = !info.split_whitespace().any(|word| word == NOT_RUN);
        if !run {
            let before = if open > 0 { lines[open - 1].trim() } else { "" };
            assert!(
                before.starts_with(NOT_RUN_WHY) && before.ends_with("-->"),
                "README.md:{}: a transcript marked {NOT_RUN} needs `{NOT_RUN_WHY}WHY -->` on the line before its fence",
                open + 1
            );
        }
        found.push(Transcript { line: open + 1, run, steps: steps(body, open + 2) });
    }
    found
}

/// The commands of a transcript's `body`, whose first line is the README's line `first`.
fn steps(body: &[&str], first: usize) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut j = 0;
    while j < body.len() {
        let line = body[j];
        let Some(command) = line.strip_prefix("$ ") else {
            let step = steps
                .last_mut()
                .unwrap_or_else(|| panic!("README.md:{}: a transcript must start with a `$ ` line", first + j));
            step.expected.push(line.trim_end().to_owned());
            j += 1;
            continue;
        };
        let at = first + j;
        let mut command = command.to_owned();
        j += 1;
        while command.ends_with('\\') && j < body.len() {
            command.push('\n');
            command.push_str(body[j]);
            j += 1;
        }
        if let Some(word) = heredoc_word(&command) {
            while j < body.len() {
                command.push('\n');
                command.push_str(body[j]);
                j += 1;
                if body[j - 1].trim_end() == word {
                    break;
                }
            }
        }
        steps.push(Step { line: at, command, expected: Vec::new() });
    }
    for step in &mut steps {
        while step.expected.last().is_some_and(|line| line.is_empty()) {
            step.expected.pop();
        }
    }
    steps
}

/// The terminating word of a here-document in `command` (`<<'LINE'`, `<<LINE`), if any.
fn heredoc_word(command: &str) -> Option<String> {
    let (_, rest) = command.split_once("<<")?;
    let rest = rest.trim_start_matches('-').trim_start();
    let word: String =
        rest.trim_start_matches(['\'', '"']).chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!word.is_empty()).then_some(word)
}

// ------------------------------------------------------------------------------------------
// Normalising

/// `line` without trailing spaces, the scratch directory `dir` made `<dir>`, and every rule of
/// [`RULES`] applied.
fn normalise(line: &str, dir: &str) -> String {
    let mut line = line.trim_end().replace(dir, "<dir>");
    for (_, rule) in RULES {
        line = rule(&line);
    }
    line
}

/// Replaces each match of `matcher` (which, at a char boundary of `line`, returns the length in
/// bytes of a match starting there, if any) with `placeholder`.
fn replace_matches(line: &str, placeholder: &str, matcher: impl Fn(&str, usize) -> Option<usize>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if let Some(len) = matcher(line, i) {
            out.push_str(placeholder);
            i += len;
        } else {
            let c = line[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The byte before `i` in `line`, if any.
fn byte_before(line: &str, i: usize) -> Option<u8> {
    i.checked_sub(1).map(|k| line.as_bytes()[k])
}

fn normalise_timestamps(line: &str) -> String {
    replace_matches(line, "<time>", |line, i| {
        let b = &line.as_bytes()[i..];
        let digits = |range: std::ops::Range<usize>| b.len() >= range.end && b[range].iter().all(u8::is_ascii_digit);
        let shape = digits(0..4)
            && b.get(4) == Some(&b'-')
            && digits(5..7)
            && b.get(7) == Some(&b'-')
            && digits(8..10)
            && b.get(10) == Some(&b'T')
            && digits(11..13)
            && b.get(13) == Some(&b':')
            && digits(14..16)
            && b.get(16) == Some(&b':')
            && digits(17..19);
        if !shape || byte_before(line, i).is_some_and(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let mut end = 19;
        if b.get(end) == Some(&b'.') {
            end += 1;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        (b.get(end) == Some(&b'Z')).then_some(end + 1)
    })
}

fn normalise_hex(line: &str) -> String {
    let standalone = |c: Option<u8>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    replace_matches(line, "<hex>", |line, i| {
        let b = line.as_bytes();
        if !standalone(byte_before(line, i)) {
            return None;
        }
        let len = b[i..].iter().take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()).count();
        (len >= 8 && standalone(b.get(i + len).copied())).then_some(len)
    })
}

fn normalise_digests(line: &str) -> String {
    let base64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    replace_matches(line, "<digest>", |line, i| {
        let b = line.as_bytes();
        if byte_before(line, i).is_some_and(base64) {
            return None;
        }
        let mut len = b[i..].iter().take_while(|c| base64(**c)).count();
        if len < 40 {
            return None;
        }
        len += b[i + len..].iter().take(2).take_while(|c| **c == b'=').count();
        Some(len)
    })
}

fn normalise_durations(line: &str) -> String {
    replace_matches(line, "<secs> s", |line, i| {
        let b = line.as_bytes();
        if byte_before(line, i).is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.') {
            return None;
        }
        let whole = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if whole == 0 || b.get(i + whole) != Some(&b'.') {
            return None;
        }
        let fraction = b[i + whole + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let end = i + whole + 1 + fraction;
        let after = &line[end..];
        let unit = after.starts_with(" s") && !after[2..].starts_with(|c: char| c.is_alphanumeric());
        (fraction > 0 && unit).then_some(end + 2 - i)
    })
}

fn normalise_measures(line: &str) -> String {
    for key in ["seconds ", "events_per_sec "] {
        if let Some(value) = line.strip_prefix(key) {
            let spaces = value.len() - value.trim_start().len();
            return format!("{key}{}<n>", " ".repeat(spaces));
        }
    }
    replace_matches(line, "(<n> bytes)", |line, i| {
        let rest = line[i..].strip_prefix('(')?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0 && rest[digits..].starts_with(" bytes)")).then_some(1 + digits + " bytes)".len())
    })
}

// ------------------------------------------------------------------------------------------
// Matching

/// Whether `expected` (normalised README lines, `…` elisions in them) matches `actual`.
fn matches(expected: &[String], actual: &[String]) -> bool {
    let Some((first, rest)) = expected.split_first() else { return actual.is_empty() };
    if is_elided_lines(first) {
        return (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]));
    }
    match actual.split_first() {
        Some((line, actual_rest)) => line_matches(first, line) && matches(rest, actual_rest),
        None => false,
    }
}

/// A README line that stands for any number of lines: `…`, maybe with a remark in parentheses.
fn is_elided_lines(line: &str) -> bool {
    line.strip_prefix('…').is_some_and(|rest| {
        let rest = rest.trim();
        rest.is_empty() || (rest.starts_with('(') && rest.ends_with(')'))
    })
}

/// Whether `actual` matches `pattern`, in which each `…` stands for any text.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut middle = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match middle.find(part) {
            Some(at) => middle = &middle[at + part.len()..],
            None => return false,
        }
    }
    true
}

// ------------------------------------------------------------------------------------------
// Playing

/// The README's session: a scratch directory, `pax-ledger` on the path, and the server.
struct Session {
    dir: tempfile::TempDir,
    bin: tempfile::TempDir,
    server: Option<ServerProcess>,
    url: String,
    status: i32,
    starts: usize,
}

impl Session {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"), dir.path().join("examples"))
            .expect("link examples/");
        let bin = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pax-ledger"), bin.path().join("pax-ledger"))
            .expect("link pax-ledger");
        Self { dir, bin, server: None, url: "http://127.0.0.1:9".into(), status: 0, starts: 0 }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn start(&mut self) {
        if self.server.is_none() {
            self.starts += 1;
            let stderr = self.bin.path().join(format!("serve-{}.stderr", self.starts));
            let server = ServerProcess::start(&self.data(), &stderr).await;
            self.url = server.url.clone();
            self.server = Some(server);
        }
    }

    /// Ctrl-C: the server must finish and exit 0.
    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            send_signal(server.pid(), libc::SIGINT);
            let tail = server.stderr_tail();
            let status = server.wait().await;
            assert!(status.success(), "the server exited with {status} after Ctrl-C; stderr:\n{tail}");
        }
    }

    /// Runs `step` as the README's reader would, and returns what it printed.
    async fn play(&mut self, step: &Step) -> String {
        let command = step.command.as_str();
        if command.split('#').next().unwrap_or_default().trim() == START_SERVER {
            self.start().await;
            self.status = 0;
            return String::new();
        }
        assert!(
            !invokes(command, "pax-ledger serve"),
            "README.md:{}: a transcript cannot run `serve` other than as `{START_SERVER}` (the test runs the \
             server): mark it {NOT_RUN}",
            step.line
        );
        if NEEDS_STOPPED.iter().any(|c| invokes(command, c)) {
            self.stop().await;
        } else if invokes(command, "pax-ledger") && !OFFLINE.iter().any(|c| invokes(command, c)) {
            self.start().await;
        }
        let output = self.bash(command, step.line).await;
        self.status = output.status.code().unwrap_or(128);
        if self.server.is_some() && invokes(command, "pax-ledger") {
            self.settle(step.line).await;
        }
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
    }

    /// Runs `command` (from README.md's line `line`) with bash as the reader's shell would, stderr
    /// into stdout, after the previous command's status.
    async fn bash(&self, command: &str, line: usize) -> std::process::Output {
        let path = format!("{}:{}", self.bin.path().display(), std::env::var("PATH").unwrap_or_default());
        // The README's `export PAX_LEDGER_…=…` (but the address, which is the test's) outlives
        // the command: kept in a file, read by the next one.
        let exported = self.bin.path().join("exported.sh");
        let script = format!(
            "exec 2>&1\n\
             touch {exported:?}; . {exported:?}; export PAX_LEDGER_ADDR={url:?}\n\
             trap 'export -p | grep \"^declare -x PAX_LEDGER_\" | grep -v \"^declare -x PAX_LEDGER_ADDR=\" > {exported:?}' EXIT\n\
             (exit {status})\n{command}",
            url = self.url,
            status = self.status
        );
        let mut bash = tokio::process::Command::new("bash");
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("PAX_LEDGER_") || key == "RUST_LOG" {
                bash.env_remove(&*key);
            }
        }
        bash.arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tokio::time::timeout(BINARY_TIMEOUT, bash.output())
            .await
            .unwrap_or_else(|_| panic!("README.md:{line}: `{command}` did not end within {BINARY_TIMEOUT:?}"))
            .expect("run bash")
    }

    /// Waits until the views have caught up with the log (`status`: lag 0, no rebuild), as they
    /// have by the time a reader types the next command: a query answers from the live views,
    /// which follow the log by a few milliseconds.
    async fn settle(&self, line: usize) {
        let started = Instant::now();
        loop {
            let output = self.bash("pax-ledger status --output json", line).await;
            let status: Option<serde_json::Value> = serde_json::from_slice(&output.stdout).ok();
            match status {
                Some(status) if status["lag"] == 0 && status["rebuilding"] == false => return,
                _ if started.elapsed() < Duration::from_secs(10) => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!(
                    "README.md:{line}: the views did not catch up with the log within 10 s after the command: {other:?} ({})",
                    String::from_utf8_lossy(&output.stdout)
                ),
            }
        }
    }
}

/// Whether `command` holds `words` (`pax-ledger export`) as whole words: not `pax-ledger
/// export-rules`.
fn invokes(command: &str, words: &str) -> bool {
    command.match_indices(words).any(|(at, _)| {
        let before = command[..at].chars().next_back();
        let after = command[at + words.len()..].chars().next();
        before.is_none_or(|c| c.is_whitespace() || "|;&(".contains(c)) && after.is_none_or(char::is_whitespace)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_transcripts_print_what_the_readme_shows() {
    let started = Instant::now();
    let readme = std::fs::read_to_string(README).expect("read README.md");
    let transcripts = transcripts(&readme);
    let mut session = Session::new();
    let dir = session.dir.path().display().to_string();
    let mut played = 0;
    let mut failures = Vec::new();
    for transcript in transcripts.iter().filter(|t| t.run) {
        for step in &transcript.steps {
            let printed = session.play(step).await;
            let mut actual: Vec<String> = printed.lines().map(|line| normalise(line, &dir)).collect();
            while actual.last().is_some_and(|line| line.is_empty()) {
                actual.pop();
            }
            let expected: Vec<String> = step.expected.iter().map(|line| normalise(line, &dir)).collect();
            if !matches(&expected, &actual) {
                failures.push(format!(
                    "README.md:{} (the transcript at line {}): `{}` printed what the README does not show.\n\
                     --- README.md, normalised ---\n{}\n--- printed, normalised ---\n{}\n--- printed ---\n{}",
                    step.line,
                    transcript.line,
                    step.command,
                    expected.join("\n"),
                    actual.join("\n"),
                    printed.trim_end()
                ));
            }
            played += 1;
        }
    }
    session.stop().await;
    let skipped = transcripts.iter().filter(|t| !t.run).count();
    assert!(
        failures.is_empty(),
        "{} of README.md's {played} commands printed something else (the first may explain the rest; the \
         normalisation rules are at the top of tests/it/readme.rs):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(played > 30, "only {played} commands of README.md were played: did its transcripts lose their `$ `?");
    eprintln!(
        "README.md: {played} commands in {} transcripts played in {:.1} s; {skipped} transcripts marked {NOT_RUN}",
        transcripts.len() - skipped,
        started.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------------------------------------
// The rules themselves

#[test]
fn readme_normalisation_keeps_what_must_not_vary() {
    let n = |line: &str| normalise(line, "/tmp/x");
    assert_eq!(
        n("       2  member-JP         0  member_joined  2026-11-25T17:21:30Z  5a1c0000-0000-4000-8000-000000000002"),
        "       2  member-JP         0  member_joined  <time>  5a1c0000-0000-4000-8000-000000000002"
    );
    assert_eq!(
        n(
            "ok: 16 events verified up to position 16 (head hash 6c73b7f43773fd64857412c8bf56443da9c78fe4283a2c662f3e6e4f6a71977c) in 0.01 s"
        ),
        "ok: 16 events verified up to position 16 (head hash <digest>) in <secs> s"
    );
    assert_eq!(n("\"recorded_at\":\"2026-11-25T17:21:30.148103773Z\""), "\"recorded_at\":\"<time>\"");
    assert_eq!(n("key_id        4710ebfac21c42c9"), "key_id        <hex>");
    assert_eq!(
        n("verifier_key  pax-ledger/4710ebfac21c42c9+90ffdbb9+ARst8ZaEfbOcMPOS37QWNOJeSLigU7bZuWOtfXgTOr4m"),
        "verifier_key  pax-<digest>"
    );
    assert_eq!(n("origin        pax-ledger/4710ebfac21c42c9"), "origin        pax-ledger/<hex>");
    assert_eq!(n("(head hash d9014cb3…)"), "(head hash <hex>…)");
    assert_eq!(n("X+MQUAPcxriILQvr4qrG6KDilkz4HPyRFbmX9h5tp6E="), "<digest>");
    assert_eq!(n("events_per_sec  6656"), "events_per_sec  <n>");
    assert_eq!(n("to /tmp/x/tour/ledger.jsonl (16343 bytes)"), "to <dir>/tour/ledger.jsonl (<n> bytes)");
    assert_eq!(n("(2 export rules at position 20)"), "(2 export rules at position 20)");
    assert_eq!(n("commitment-0193a5b0-7c1e-7cc3-9c55-0000000000c1"), "commitment-0193a5b0-7c1e-7cc3-9c55-0000000000c1");
    assert_eq!(n("us-cn-nvidia-h200  1000000"), "us-cn-nvidia-h200  1000000");

    let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(matches(&lines("a\n…   (any)\nz"), &lines("a\nb\nc\nz")));
    assert!(matches(&lines("a\n…\nz"), &lines("a\nz")));
    assert!(!matches(&lines("a\n…\nz"), &lines("a\nb")));
    assert!(matches(&lines("error: …; stopping (…)"), &lines("error: x y; stopping (z)")));
    assert!(!matches(&lines("appended 15, …"), &lines("appended 16, already")));
    assert!(!matches(&lines("a"), &lines("a\nb")));

    assert!(invokes("pax-ledger export --data data", "pax-ledger export"));
    assert!(!invokes("pax-ledger export-rules", "pax-ledger export"));
    assert!(invokes("pax-ledger key public --data data | awk", "pax-ledger key"));
    assert!(!invokes("mkdir -p tour", "pax-ledger"));
}

#[test]
fn readme_transcripts_are_found_and_split_into_commands() {
    let readme = "text\n```\n$ a \\\n  b\nout\n\n$ c <<'LINE'\n{}\nLINE\nmore\n```\n```\nno prompt\n```\n\
                  <!-- not run by tests/it/readme.rs: a reason -->\n```console not-run\n$ d\n```\n";
    let found = transcripts(readme);
    assert_eq!(found.len(), 2);
    assert!(found[0].run && !found[1].run);
    let steps = &found[0].steps;
    assert_eq!(steps[0].command, "a \\\n  b");
    assert_eq!(steps[0].expected, ["out"]);
    assert_eq!(steps[1].command, "c <<'LINE'\n{}\nLINE");
    assert_eq!(steps[1].expected, ["more"]);
    assert_eq!(steps[1].line, 7);
}

// ------------------------------------------------------------------------------------------
// The configuration reference

/// The markers around README.md's configuration reference.
const REFERENCE_START: &str = "<!-- config-reference:start: generated from src/config.rs (config::KEYS); \
                               to change it, change KEYS and run BLESS_README=1 cargo nextest run -E 'test(/readme/)' -->";
const REFERENCE_END: &str = "<!-- config-reference:end -->";

/// README.md's configuration table is `config::reference_table()`: one row per key of
/// `config::KEYS`, with `ServeConfig::default()`'s defaults and the ranges `serve` checks. With
/// `BLESS_README=1` (not a `PAX_LEDGER_` variable, which the configuration would read as a key),
/// the test writes it into README.md instead of failing.
#[test]
fn readme_configuration_reference_is_rendered_from_config_keys() {
    let readme = std::fs::read_to_string(README).expect("read README.md");
    let (before, rest) = readme.split_once(REFERENCE_START).unwrap_or_else(|| {
        panic!("README.md has no line `{REFERENCE_START}` (where the configuration reference starts)")
    });
    let (current, after) = rest
        .split_once(REFERENCE_END)
        .unwrap_or_else(|| panic!("README.md has no `{REFERENCE_END}` after the reference's start"));
    let wanted = format!("\n{}", pax_ledger::config::reference_table());
    if current == wanted {
        return;
    }
    if std::env::var_os("BLESS_README").is_some_and(|v| v == "1") {
        std::fs::write(README, format!("{before}{REFERENCE_START}{wanted}{REFERENCE_END}{after}"))
            .expect("write README.md");
        return;
    }
    panic!(
        "README.md's configuration reference is not the one src/config.rs renders from config::KEYS. \
         Change KEYS (not the README), then run BLESS_README=1 cargo nextest run -E 'test(/readme/)' \
         to rewrite it.\n--- README.md ---{current}--- config::reference_table() ---{wanted}"
    );
}
