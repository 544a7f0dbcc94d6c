//! The client subcommands `history` and `tail` over gRPC (DESIGN.md §6), and what every client
//! command shares: connecting, status codes, printing lines and tables.
//!
//! Output goes to stdout one line at a time, each flushed as soon as it is written, either as a
//! table for people or as JSON Lines; errors go to stderr as `error: …`. A closed stdout (the
//! reader of a pipe went away, as with `| head`) ends `history` and `tail` quietly.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::{ClientArgs, HistoryArgs, Output};
use crate::archive::event_line;
use crate::domain::EVENT_TYPE_NAMES;
use crate::proto::v1 as pb;
use crate::proto::v1::ledger_service_client::LedgerServiceClient;
use crate::service::status::code_name;

/// Events asked for per read: the server's largest page.
const READ_PAGE_MAX: u32 = 1000;
/// The width of the longest stream name of the usual kinds (`commitment-{uuid}`): the stream
/// column starts this wide in tables printed a row at a time.
pub(super) const STREAM_COLUMN_WIDTH: usize = "commitment-".len() + 36;

pub(super) type Client = LedgerServiceClient<InterceptedService<Channel, BearerToken>>;

// ------------------------------------------------------------------------------------------
// Connecting

/// Adds `authorization: Bearer T` to every request when a token was given.
#[derive(Clone)]
pub(super) struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to the server named by `--addr` (a bare `host:port` is taken as `http://host:port`;
/// https:// is TLS: see `endpoint`).
pub(super) async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    Ok(LedgerServiceClient::new(connect_channel(args).await?)
        .max_decoding_message_size(crate::server::REQUEST_BYTES_MAX)
        .max_encoding_message_size(crate::server::REQUEST_BYTES_MAX))
}

/// A connection to the server named by `--addr` that sends the token with every request: what
/// any service's client is built on. Every client command connects through here.
pub(super) async fn connect_channel(args: &ClientArgs) -> anyhow::Result<InterceptedService<Channel, BearerToken>> {
    // Before connecting: an address the token may not be sent to is refused without contact.
    let endpoint = super::endpoint::endpoint(args)?;
    let url = super::endpoint::url(args);
    let channel = endpoint.connect().await.with_context(|| {
        format!("cannot connect to the pax-ledger server at {url} (is it running there? --addr names another)")
    })?;
    let token = match &args.token {
        None => None,
        Some(token) => Some(
            MetadataValue::try_from(format!("Bearer {token}"))
                .context("--token must be printable ASCII (it is sent as an HTTP header)")?,
        ),
    };
    Ok(InterceptedService::new(channel, BearerToken(token)))
}

/// A status's message followed by its causes, each once: a transport failure's message alone
/// ("tcp connect error") does not say what failed ("Connection refused").
pub(super) fn status_message(status: &Status) -> String {
    let mut message = status.message().to_owned();
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message = if message.is_empty() { text } else { format!("{message}: {text}") };
        }
        cause = error.source();
    }
    message
}

/// `CODE: message`, the code spelled as the gRPC specification does (`FAILED_PRECONDITION`).
pub(super) fn status_text(status: &Status) -> String {
    format!("{}: {}", code_name(status.code()), status_message(status))
}

/// A status as the error a client command ends with.
pub(super) fn status_error(status: impl std::borrow::Borrow<Status>) -> anyhow::Error {
    anyhow::anyhow!(status_text(status.borrow()))
}

// ------------------------------------------------------------------------------------------
// Printing

/// Writes one line to stdout and flushes it, unless `closed`; a reader that closed stdout
/// (`| head`) sets `closed`, and the rest is dropped quietly. The lock is taken per line, so it
/// is never held across an await.
pub(super) fn write_line(closed: &mut bool, text: &str) -> anyhow::Result<()> {
    if *closed {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            *closed = true;
            Ok(())
        }
        result => result.context("writing to stdout"),
    }
}

/// Writes whole lines to stdout, flushing each. Once stdout is closed by its reader, further
/// lines are dropped and [`Printer::closed`] says so.
pub(super) struct Printer {
    pub(super) output: Output,
    closed: bool,
}

impl Printer {
    pub(super) fn new(output: Output) -> Self {
        Self { output, closed: false }
    }

    pub(super) fn line(&mut self, text: &str) -> anyhow::Result<()> {
        write_line(&mut self.closed, text)
    }

    fn closed(&self) -> bool {
        self.closed
    }
}

/// A table whose columns widen to fit the widest cell seen so far; the header is printed
/// before the first row.
pub(super) struct Table {
    headers: &'static [&'static str],
    /// Right-aligned (numeric) columns.
    right: &'static [bool],
    widths: Vec<usize>,
    header_printed: bool,
}

impl Table {
    pub(super) fn new(headers: &'static [&'static str], right: &'static [bool]) -> Self {
        Self { headers, right, widths: headers.iter().map(|h| h.len()).collect(), header_printed: false }
    }

    /// Starts column `header` at least `width` wide: for tables printed a row at a time, so that
    /// the usual rows line up from the start.
    pub(super) fn with_min_width(mut self, header: &str, width: usize) -> Self {
        if let Some(i) = self.headers.iter().position(|h| *h == header) {
            self.widths[i] = self.widths[i].max(width);
        }
        self
    }

    /// Widens the columns to fit `rows`.
    fn fit(&mut self, rows: &[Vec<String>]) {
        for row in rows {
            for (width, cell) in self.widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }

    /// Fits the columns to `rows`, then prints them.
    pub(super) fn print(&mut self, printer: &mut Printer, rows: &[Vec<String>]) -> anyhow::Result<()> {
        self.fit(rows);
        if !self.header_printed && !rows.is_empty() {
            self.header_printed = true;
            let header: Vec<String> = self.headers.iter().map(|h| h.to_uppercase()).collect();
            printer.line(&self.render(&header))?;
        }
        for row in rows {
            printer.line(&self.render(row))?;
        }
        Ok(())
    }

    fn render(&self, row: &[String]) -> String {
        let last = row.len().saturating_sub(1);
        let cells = row.iter().enumerate().map(|(i, cell)| match (self.right[i], i == last) {
            (true, _) => format!("{cell:>width$}", width = self.widths[i]),
            (false, true) => cell.clone(),
            (false, false) => format!("{cell:<width$}", width = self.widths[i]),
        });
        cells.collect::<Vec<_>>().join("  ")
    }
}

// ------------------------------------------------------------------------------------------
// history and tail

/// Prints recorded events as history lines (JSON) or table rows.
struct EventPrinter {
    printer: Printer,
    table: Table,
}

impl EventPrinter {
    /// `one_at_a_time`: events arrive singly (tail), so the table cannot fit a page at once.
    fn new(output: Output, one_at_a_time: bool) -> Self {
        let mut table = Table::new(
            &["position", "stream", "revision", "type", "recorded_at", "event_id", "actor"],
            &[true, false, true, false, false, false, false],
        );
        if one_at_a_time {
            let longest_type = EVENT_TYPE_NAMES.iter().map(|t| t.len()).max().unwrap_or_default();
            table = table.with_min_width("stream", STREAM_COLUMN_WIDTH).with_min_width("type", longest_type);
        }
        Self { printer: Printer::new(output), table }
    }

    fn print<'a>(&mut self, events: impl IntoIterator<Item = &'a pb::RecordedEvent>) -> anyhow::Result<()> {
        match self.printer.output {
            Output::Json => {
                for event in events {
                    self.printer.line(&event_line::to_json(event))?;
                }
                Ok(())
            }
            Output::Table => {
                let rows: Vec<Vec<String>> = events.into_iter().map(table_row).collect();
                self.table.print(&mut self.printer, &rows)
            }
        }
    }

    fn closed(&self) -> bool {
        self.printer.closed()
    }
}

fn table_row(event: &pb::RecordedEvent) -> Vec<String> {
    // Whole seconds in the table; JSON keeps the full precision.
    let recorded_at = event
        .record_time
        .map(|t| prost_types::Timestamp { nanos: 0, ..t })
        .and_then(|t| event_line::format_time(Some(&t)))
        .unwrap_or_default();
    vec![
        event.position.to_string(),
        event.stream.clone(),
        event.revision.to_string(),
        event.event_type.clone(),
        recorded_at,
        event.event_id.clone(),
        event.metadata.as_ref().map(|m| m.actor.clone()).unwrap_or_default(),
    ]
}

/// `history` (follow = false) prints the events of the log or of one stream in log order, from
/// `--from`; `tail` (follow = true) does the same and then follows new events until interrupted
/// or until the server ends the subscription.
pub async fn history(args: HistoryArgs, follow: bool) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.client).await?;
    let mut printer = EventPrinter::new(args.client.output, follow);
    match (follow, &args.stream) {
        (true, stream) => tail(&mut client, stream.as_deref(), args.from, &mut printer).await?,
        (false, Some(stream)) => read_stream(&mut client, stream, args.from.unwrap_or(0), &mut printer).await?,
        (false, None) => read_all(&mut client, args.from.unwrap_or(0), &mut printer).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Pages through the whole log forwards from `from` until the server says it reached the end.
async fn read_all(client: &mut Client, from: u64, printer: &mut EventPrinter) -> anyhow::Result<()> {
    let mut page_token = String::new();
    loop {
        let request =
            pb::ReadAllRequest { from_position: from, page_size: READ_PAGE_MAX, page_token, ..Default::default() };
        let page = client.read_all(request).await.map_err(|s| status_error(&s))?.into_inner();
        printer.print(&page.events)?;
        if page.next_page_token.is_empty() || printer.closed() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// Pages through one stream forwards, printing the events at position `from` or later.
async fn read_stream(client: &mut Client, stream: &str, from: u64, printer: &mut EventPrinter) -> anyhow::Result<()> {
    let mut from_revision = None;
    loop {
        let request = pb::ReadStreamRequest {
            stream: stream.to_owned(),
            from_revision,
            limit: READ_PAGE_MAX,
            ..Default::default()
        };
        let page = client.read_stream(request).await.map_err(|s| status_error(&s))?.into_inner();
        printer.print(page.events.iter().filter(|e| e.position >= from))?;
        match page.next_revision {
            Some(next) if !printer.closed() => from_revision = Some(next),
            _ => return Ok(()),
        }
    }
}

/// Subscribes from `from` (default: the start) and prints until the user presses Ctrl-C (or
/// closes stdout), which ends quietly. A stream filter is sent as a prefix and then matched
/// exactly here (`member-J` is a prefix of `member-JP`).
///
/// A subscription has no end of its own, so any other end is an error, whatever its status,
/// OK included: the server stopped (UNAVAILABLE) or the connection broke, and what is committed
/// from then on is not followed. The error says how the stream ended and where to resume.
async fn tail(
    client: &mut Client,
    stream: Option<&str>,
    from: Option<u64>,
    printer: &mut EventPrinter,
) -> anyhow::Result<()> {
    // Taken before subscribing: from here on, Ctrl-C ends the command instead of killing it.
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let from = from.unwrap_or(1);
    let request = pb::SubscribeRequest {
        from_position: from,
        stream_prefixes: stream.map(|s| vec![s.to_owned()]).unwrap_or_default(),
        event_types: Vec::new(),
    };
    use pb::subscribe_response::Message;
    let mut subscription = client.subscribe(request).await.map_err(|s| status_error(&s))?.into_inner();
    // Every position up to this one has been delivered (printed, or filtered out here).
    let mut delivered = from.saturating_sub(1);
    let ended = loop {
        let item = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            item = subscription.message() => item,
        };
        let item = match item {
            Ok(Some(item)) => item,
            Ok(None) => {
                break format!(
                    "{}: the stream ended without an error, but a subscription ends only when the server stops it",
                    code_name(Code::Ok)
                );
            }
            Err(status) => break format!("{}: {}", code_name(status.code()), status_message(&status)),
        };
        match item.message {
            Some(Message::Event(event)) => {
                delivered = delivered.max(event.position);
                if stream.is_none_or(|s| s == event.stream) {
                    printer.print([&event])?;
                }
            }
            Some(Message::CaughtUp(caught_up)) => {
                delivered = delivered.max(caught_up.position);
                if printer.printer.output == Output::Table {
                    eprintln!("-- caught up at position {}; following new events (Ctrl-C to stop)", caught_up.position);
                }
            }
            None => {}
        }
        if printer.closed() {
            return Ok(());
        }
    };
    anyhow::bail!(
        "the server ended the subscription: {ended}; events after position {delivered} were not followed \
         (resume with tail --from {})",
        delivered + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_widen_to_fit() {
        let mut table = Table::new(&["position", "stream", "type"], &[true, false, false]);
        let rows =
            [["7", "member-JP", "member_joined"], ["12", "export-rule-us-cn-nvidia-h200", "export_rule_changed"]]
                .map(|row| row.map(str::to_owned).to_vec());
        table.fit(&rows);
        assert_eq!(table.render(&rows[0]), "       7  member-JP                      member_joined");
        assert_eq!(table.render(&rows[1]), "      12  export-rule-us-cn-nvidia-h200  export_rule_changed");
    }
}
