//! `append`: event lines from a file or stdin, sent in order, one request per line or per
//! `--batch` lines (DESIGN.md §6).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tonic::{Code, Status};

use super::client::{Client, Printer, STREAM_COLUMN_WIDTH, Table, connect, status_message};
use super::{AppendArgs, Output};
use crate::archive::event_line::{self, EventLine, LineError};
use crate::proto::v1 as pb;
use crate::service::status::code_name;

/// One acknowledged event, as `append` prints it.
#[derive(Serialize)]
struct AppendedLine<'a> {
    event_id: &'a str,
    stream: &'a str,
    revision: u64,
    position: u64,
}

/// Up to `--batch` input lines, sent as one atomic request.
struct Batch {
    lines: Vec<(usize, Result<EventLine, LineError>)>,
}

impl Batch {
    /// `line N` or `line N..M`: the input lines the batch spans.
    fn range(&self) -> String {
        match (self.lines.first(), self.lines.last()) {
            (Some((first, _)), Some((last, _))) if first != last => format!("line {first}..{last}"),
            (Some((first, _)), _) => format!("line {first}"),
            _ => "no line".to_owned(),
        }
    }

    /// The request, or the local errors that keep the batch from being sent. Within one
    /// request a stream has at most one expectation: the first line of a stream with an
    /// `expected_revision` sets it, and another such line of that stream is an error.
    fn request(&self) -> Result<pb::AppendRequest, Vec<String>> {
        let mut errors = Vec::new();
        let mut request = pb::AppendRequest::default();
        let mut expected_by: HashMap<&str, usize> = HashMap::new();
        for (line, parsed) in &self.lines {
            match parsed {
                Err(error) => errors.push(error.to_string()),
                Ok(event) => {
                    if let Some(expectation) = event.expectation() {
                        match expected_by.get(event.stream.as_str()) {
                            Some(first) => errors.push(format!(
                                "line {line}: expected_revision: stream {} already has an expected revision from line {first} in this batch",
                                event.stream
                            )),
                            None => {
                                expected_by.insert(&event.stream, *line);
                                request.expectations.push(expectation);
                            }
                        }
                    }
                    request.events.push(event.event.clone());
                }
            }
        }
        if errors.is_empty() { Ok(request) } else { Err(errors) }
    }

    /// The server's message, with `events[i]` also given as its input line.
    fn explain(&self, message: &str) -> String {
        let index = message
            .split_once("events[")
            .and_then(|(_, rest)| rest.split_once(']'))
            .and_then(|(digits, _)| digits.parse::<usize>().ok());
        match index.and_then(|i| self.lines.get(i).map(|(line, _)| (i, line))) {
            Some((i, line)) if self.lines.len() > 1 => format!("{message} (events[{i}] is line {line})"),
            _ => message.to_owned(),
        }
    }
}

/// How long to wait before the first retry of a request that found the server unavailable;
/// each further retry waits twice as long, up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(250);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(4);

/// What a run did, counted in events (input lines that hold one), printed as the last line on
/// stderr.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Committed by this run.
    appended: usize,
    /// Found already committed with the same content (sent before, by this input or another).
    already_present: usize,
    /// Refused by the server, or by this client (a line that cannot be read or parsed).
    rejected: usize,
    /// Never sent: in a batch with a refused line, or after the server became unavailable.
    not_sent: usize,
    /// The server was or became unavailable and stdin was left unread from this line on (its
    /// lines uncounted).
    stdin_unread_from: Option<usize>,
}

impl Tally {
    fn failed(&self) -> bool {
        self.rejected > 0 || self.not_sent > 0 || self.stdin_unread_from.is_some()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "appended {}, already present {}, rejected {}, not sent {}",
            self.appended, self.already_present, self.rejected, self.not_sent
        )?;
        if let Some(line) = self.stdin_unread_from {
            write!(f, "; stdin was not read from line {line} on")?;
        }
        Ok(())
    }
}

/// How one batch ended.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Acknowledged, or refused (by the server or locally): either way, go on with the next.
    Answered,
    /// The server stayed unavailable through every retry: stop sending.
    ServerUnavailable,
}

/// Appends the event lines of `--file` or stdin, `--batch` lines per atomic request, in order.
/// Every acknowledged event is printed; a refused request or line is reported on stderr and the
/// rest continues. A request that finds the server unavailable is retried `--retries` times,
/// then nothing more is sent. The last line on stderr is always the summary ([`Tally`]); the
/// exit code is non-zero when anything was rejected or not sent.
pub async fn append(args: AppendArgs) -> anyhow::Result<ExitCode> {
    let mut tally = Tally::default();
    let result = append_counting(&args, &mut tally).await;
    if let Err(error) = &result {
        eprintln!("error: {}", super::error_text(error));
    }
    eprintln!("{tally}");
    Ok(if result.is_err() || tally.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn append_counting(args: &AppendArgs, tally: &mut Tally) -> anyhow::Result<()> {
    let (input, name): (Box<dyn AsyncBufRead + Unpin + Send>, String) = match &args.file {
        Some(path) => (
            Box::new(BufReader::new(
                tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?,
            )),
            path.display().to_string(),
        ),
        None => (Box::new(BufReader::new(tokio::io::stdin())), "stdin".to_owned()),
    };
    let sign_key = match &args.sign_key {
        Some(path) => Some(crate::audit::keys::load(path)?),
        None => None,
    };
    let mut lines = InputLines::new(input);
    let mut sender = match connect(&args.client).await {
        Ok(client) => Sender::new(client, args),
        Err(error) => {
            eprintln!("error: {}", super::error_text(&error));
            return count_unsent(&mut lines, &name, args.file.is_none(), tally).await;
        }
    };
    let batch_max = args.batch as usize;
    let mut batch = Batch { lines: Vec::with_capacity(batch_max) };
    loop {
        let line = lines.next().await.with_context(|| format!("reading line {} of {name}", lines.number + 1))?;
        let end = line.is_none();
        if let Some((number, text)) = line {
            let event = text.and_then(|text| event_line::parse(number, &text)).and_then(|mut event| {
                event_line::require_event_id(&mut event, number, args.allow_new_ids)?;
                if let Some(key) = &sign_key {
                    event_line::sign(&mut event.event, key);
                }
                Ok(event)
            });
            batch.lines.push((number, event));
        }
        if batch.lines.len() == batch_max || (end && !batch.lines.is_empty()) {
            let sent = sender.send(&batch, tally).await?;
            batch.lines.clear();
            if sent == Sent::ServerUnavailable {
                return count_unsent(&mut lines, &name, args.file.is_none(), tally).await;
            }
        }
        if end {
            return Ok(());
        }
    }
}

/// Counts the event lines left in a file as not sent. The rest of stdin is left unread: it may
/// never end (a producer that keeps writing), and its writer learns from the closed pipe.
async fn count_unsent<R: AsyncBufRead + Unpin>(
    lines: &mut InputLines<R>,
    name: &str,
    stdin: bool,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    if stdin {
        tally.stdin_unread_from = Some(lines.number + 1);
        return Ok(());
    }
    while lines.next().await.with_context(|| format!("reading line {} of {name}", lines.number + 1))?.is_some() {
        tally.not_sent += 1;
    }
    Ok(())
}

/// The UTF-8 byte-order mark, which some editors put at the start of a file.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// The input's lines that hold an event, each decoded alone: a line that is not UTF-8 is one
/// bad line, reported like a line that is not JSON, and the lines after it are still read. A
/// byte-order mark at the very start is skipped; blank lines and lines starting with `#` are
/// skipped (whatever their encoding: a comment is never read).
struct InputLines<R> {
    reader: R,
    /// The number of the last line read (from 1).
    number: usize,
    bytes: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> InputLines<R> {
    fn new(reader: R) -> Self {
        Self { reader, number: 0, bytes: Vec::new() }
    }

    /// The next line that holds an event: its number, and its text or why it cannot be read.
    async fn next(&mut self) -> std::io::Result<Option<(usize, Result<String, LineError>)>> {
        loop {
            self.bytes.clear();
            if self.reader.read_until(b'\n', &mut self.bytes).await? == 0 {
                return Ok(None);
            }
            self.number += 1;
            let mut line = self.bytes.as_slice();
            if self.number == 1 {
                line = line.strip_prefix(BYTE_ORDER_MARK).unwrap_or(line);
            }
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let text = match std::str::from_utf8(line) {
                Ok(text) => Ok(text.to_owned()),
                Err(error) => Err(LineError {
                    line: self.number,
                    key: String::new(),
                    message: format!(
                        "not UTF-8 (byte {} of the line is not part of a UTF-8 character); the line is skipped",
                        error.valid_up_to() + 1
                    ),
                }),
            };
            return Ok(Some((self.number, text)));
        }
    }
}

/// Sends batches and prints what the server acknowledged.
struct Sender {
    client: Client,
    printer: Printer,
    table: Table,
    retries: u32,
}

impl Sender {
    fn new(client: Client, args: &AppendArgs) -> Self {
        let table = Table::new(&["event_id", "stream", "revision", "position"], &[false, false, true, true])
            .with_min_width("stream", STREAM_COLUMN_WIDTH);
        Self { client, printer: Printer::new(args.client.output), table, retries: args.retries }
    }

    /// Sends one batch (retrying while the server is unavailable), prints its outcome and
    /// counts it in `tally`.
    async fn send(&mut self, batch: &Batch, tally: &mut Tally) -> anyhow::Result<Sent> {
        let request = match batch.request() {
            Ok(request) => request,
            Err(errors) => {
                let range = batch.range();
                for error in &errors {
                    if batch.lines.len() > 1 {
                        eprintln!("error: {range}: not sent: {error}");
                    } else {
                        eprintln!("error: {error}");
                    }
                }
                tally.rejected += errors.len();
                tally.not_sent += batch.lines.len() - errors.len();
                return Ok(Sent::Answered);
            }
        };
        let mut retried = 0;
        let response = loop {
            let status = match self.client.append(request.clone()).await {
                Ok(response) => break response.into_inner(),
                Err(status) => status,
            };
            let code = code_name(status.code());
            let message = batch.explain(&status_message(&status));
            if !server_unavailable(&status) {
                eprintln!("error: {}: {code}: {message}", batch.range());
                tally.rejected += batch.lines.len();
                return Ok(Sent::Answered);
            }
            if retried == self.retries {
                let retries = if retried == 1 { "1 retry".to_owned() } else { format!("{retried} retries") };
                eprintln!(
                    "error: {}: {code}: {message}; the server is still unavailable after {retries}: stopping, \
                     nothing more is sent (send the same input again once it is back: the events it already \
                     holds are found by their ids and not appended twice)",
                    batch.range()
                );
                tally.not_sent += batch.lines.len();
                return Ok(Sent::ServerUnavailable);
            }
            let backoff = retry_backoff(retried);
            retried += 1;
            eprintln!(
                "warning: {}: {code}: {message}; retrying in {:.2} s (retry {retried} of {})",
                batch.range(),
                backoff.as_secs_f64(),
                self.retries
            );
            tokio::time::sleep(backoff).await;
        };
        if response.already_committed {
            tally.already_present += response.events.len();
        } else {
            tally.appended += response.events.len();
        }
        self.print(&response.events)?;
        Ok(Sent::Answered)
    }

    fn print(&mut self, events: &[pb::AppendedEvent]) -> anyhow::Result<()> {
        match self.printer.output {
            Output::Json => {
                for event in events {
                    let line = AppendedLine {
                        event_id: &event.event_id,
                        stream: &event.stream,
                        revision: event.revision,
                        position: event.position,
                    };
                    self.printer.line(&serde_json::to_string(&line)?)?;
                }
                Ok(())
            }
            Output::Table => {
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|e| vec![e.event_id.clone(), e.stream.clone(), e.revision.to_string(), e.position.to_string()])
                    .collect();
                self.table.print(&mut self.printer, &rows)
            }
        }
    }
}

/// Whether the server could not be reached, is not taking appends (UNAVAILABLE: it is stopping,
/// or halted its writes), or the connection failed under the request (a status this client made
/// from a transport error, which it carries as its source; a status the server sent carries
/// none): what a retry may cure. Safe to retry because every event has its id: a request that
/// was in fact committed before its answer was lost is answered as already committed.
fn server_unavailable(status: &Status) -> bool {
    status.code() == Code::Unavailable || std::error::Error::source(status).is_some()
}

/// The wait before retry number `retried + 1`.
fn retry_backoff(retried: u32) -> Duration {
    RETRY_BACKOFF_FIRST.saturating_mul(1 << retried.min(16)).min(RETRY_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` as `append` does: each event line's number and its text or error.
    fn input_lines(input: &[u8]) -> Vec<(usize, Result<String, String>)> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut lines = InputLines::new(input);
            let mut read = Vec::new();
            while let Some((number, text)) = lines.next().await.unwrap() {
                read.push((number, text.map_err(|e| e.to_string())));
            }
            read
        })
    }

    #[test]
    fn a_line_that_is_not_utf8_is_reported_and_the_lines_after_it_are_read() {
        let input = b"{\"a\": 1}\n{\"b\": \"caf\xE9\"}\r\n\n# comment \xFF\n  {\"c\": 3}  \r\n{\"d\": 4}";
        assert_eq!(
            input_lines(input),
            [
                (1, Ok(r#"{"a": 1}"#.to_owned())),
                (
                    2,
                    Err(
                        "line 2: not UTF-8 (byte 11 of the line is not part of a UTF-8 character); the line is skipped"
                            .to_owned()
                    )
                ),
                (5, Ok(r#"{"c": 3}"#.to_owned())),
                (6, Ok(r#"{"d": 4}"#.to_owned())),
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_at_the_start_only() {
        assert_eq!(input_lines(b"\xEF\xBB\xBF{\"a\": 1}\n"), [(1, Ok(r#"{"a": 1}"#.to_owned()))]);
        assert_eq!(input_lines(b"\xEF\xBB\xBF# comment\n{}\n"), [(2, Ok("{}".to_owned()))]);
        let later = input_lines(b"{}\n\xEF\xBB\xBF{}\n");
        assert_eq!(later[1], (2, Ok("\u{FEFF}{}".to_owned())), "a mark inside the file is the line's own text");
    }

    fn batch(lines: &[&str]) -> Batch {
        Batch { lines: lines.iter().enumerate().map(|(i, text)| (i + 3, event_line::parse(i + 3, text))).collect() }
    }

    const JOIN_JP: &str = r#"{"type": "member_joined", "data": {"code": "JP", "name": "Japan", "kind": "state", "role": "member"}, "expected_revision": "no_stream"}"#;
    const ROLE_JP: &str = r#"{"type": "member_role_changed", "data": {"code": "JP", "role": "guest"}}"#;
    const ROLE_JP_EXPECTING: &str =
        r#"{"type": "member_role_changed", "data": {"code": "JP", "role": "guest"}, "expected_revision": 0}"#;
    const JOIN_KR: &str = r#"{"type": "member_joined", "data": {"code": "KR", "name": "South Korea", "kind": "state", "role": "member"}, "expected_revision": "no_stream"}"#;

    #[test]
    fn a_batch_sets_one_expectation_per_stream() {
        let request = batch(&[JOIN_JP, ROLE_JP, JOIN_KR]).request().unwrap();
        assert_eq!(request.events.len(), 3);
        let streams: Vec<&str> = request.expectations.iter().map(|e| e.stream.as_str()).collect();
        assert_eq!(streams, ["member-JP", "member-KR"]);
    }

    #[test]
    fn a_second_expectation_on_a_stream_is_a_local_error() {
        let errors = batch(&[JOIN_JP, ROLE_JP_EXPECTING]).request().unwrap_err();
        assert_eq!(
            errors,
            ["line 4: expected_revision: stream member-JP already has an expected revision from line 3 in this batch"]
        );
    }

    #[test]
    fn an_invalid_line_keeps_its_batch_from_being_sent() {
        let errors = batch(&[JOIN_JP, r#"{"type": "member_joined"}"#]).request().unwrap_err();
        assert_eq!(errors, ["line 4: data: is required"]);
    }

    #[test]
    fn ranges_and_server_messages_name_input_lines() {
        assert_eq!(batch(&[JOIN_JP]).range(), "line 3");
        let two = batch(&[JOIN_JP, JOIN_KR]);
        assert_eq!(two.range(), "line 3..4");
        assert_eq!(
            two.explain("events[1]: member KR has already joined"),
            "events[1]: member KR has already joined (events[1] is line 4)"
        );
        assert_eq!(two.explain("stream member-JP is at revision 0"), "stream member-JP is at revision 0");
    }
}
