//! The read-side client subcommands of DESIGN.md §6: `members`, `projects`, `export-rules`,
//! `commitments` and `summary` ask QueryService; `status` and `rebuild` ask ProjectionService.
//!
//! With `--output json` each entity is one JSON line with the field names of DESIGN.md §1,
//! enum values in lower snake_case, times in RFC 3339 (UTC), and the `position` of the log that
//! the answer reflects. A list is read page after page to its end, and every page of one list
//! reflects the position of its first page. Tables are aligned and end with a line such as
//! `(13 members at position 19)`. A rejected request ends the command with `error: CODE: message`
//! on stderr and a non-zero exit status.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{ClientArgs, Output};
use crate::archive::event_line::format_time;
use crate::proto::v1 as pb;
use crate::proto::v1::projection_service_client::ProjectionServiceClient;
use crate::proto::v1::query_service_client::QueryServiceClient;
use crate::service::convert;

/// Entities asked for per list page: the server's largest page (AIP-158 `page_size`).
const LIST_PAGE_MAX: i32 = 1000;

// ------------------------------------------------------------------------------------------
// Arguments

/// Which state of the log a query reads (QueryService's `Consistency`).
#[derive(Debug, Args)]
pub struct ConsistencyArgs {
    /// Answer from history: as the ledger stood after this log position (0: before the first
    /// event), or after the last event recorded at or before this RFC 3339 time.
    #[arg(long, value_name = "TIME|POSITION", value_parser = parse_as_of)]
    pub as_of: Option<AsOf>,
    /// Read-your-writes: wait (at most 30 s) until the views reflect at least this position,
    /// e.g. one that `append` printed.
    #[arg(long, value_name = "N")]
    pub min_position: Option<u64>,
}

/// `--as-of`: a log position or a recording time.
#[derive(Clone, Debug, PartialEq)]
pub enum AsOf {
    Position(u64),
    Time(prost_types::Timestamp),
}

fn parse_as_of(raw: &str) -> Result<AsOf, String> {
    if let Ok(position) = raw.parse::<u64>() {
        return Ok(AsOf::Position(position));
    }
    match DateTime::parse_from_rfc3339(raw) {
        Ok(time) => Ok(AsOf::Time(convert::to_timestamp(&time.with_timezone(&Utc)))),
        Err(_) => Err("expected a log position (a whole number such as 15) or an RFC 3339 time such as \
                       2025-12-11T00:00:00Z"
            .to_owned()),
    }
}

/// A calendar date, checked here so that a typo is caught before the request is sent.
fn parse_date(raw: &str) -> Result<String, String> {
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(date) if raw.len() == 10 => Ok(convert::format_date(&date)),
        _ => Err("expected a calendar date YYYY-MM-DD such as 2025-12-11".to_owned()),
    }
}

impl ConsistencyArgs {
    fn to_pb(&self) -> Option<pb::Consistency> {
        if self.as_of.is_none() && self.min_position.is_none() {
            return None;
        }
        let (as_of_position, as_of_time) = match &self.as_of {
            None => (None, None),
            Some(AsOf::Position(position)) => (Some(*position), None),
            Some(AsOf::Time(time)) => (None, Some(*time)),
        };
        Some(pb::Consistency { min_position: self.min_position.unwrap_or(0), as_of_position, as_of_time })
    }
}

// Filter values: the lower snake_case names of DESIGN.md §1, each equal to its wire value.

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum RoleFilter {
    Member = pb::MemberRole::Member as isize,
    Guest = pb::MemberRole::Guest as isize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KindFilter {
    State = pb::MemberKind::State as isize,
    Organization = pb::MemberKind::Organization as isize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum PillarFilter {
    Semiconductors = pb::Pillar::Semiconductors as isize,
    CriticalMinerals = pb::Pillar::CriticalMinerals as isize,
    Energy = pb::Pillar::Energy as isize,
    AiCompute = pb::Pillar::AiCompute as isize,
    Networks = pb::Pillar::Networks as isize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ProjectStatusFilter {
    Identified = pb::ProjectStatus::Identified as isize,
    Approved = pb::ProjectStatus::Approved as isize,
    UnderWay = pb::ProjectStatus::UnderWay as isize,
    Completed = pb::ProjectStatus::Completed as isize,
    Cancelled = pb::ProjectStatus::Cancelled as isize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum TreatmentFilter {
    Allowed = pb::Treatment::Allowed as isize,
    AllowedWithLevy = pb::Treatment::AllowedWithLevy as isize,
    LicenseRequired = pb::Treatment::LicenseRequired as isize,
    Prohibited = pb::Treatment::Prohibited as isize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum CommitmentStatusFilter {
    Open = pb::CommitmentStatus::Open as isize,
    Fulfilled = pb::CommitmentStatus::Fulfilled as isize,
    Withdrawn = pb::CommitmentStatus::Withdrawn as isize,
    /// Open and due before `--on` (default: today, UTC).
    Overdue = pb::CommitmentStatus::Overdue as isize,
}

/// The wire value of an optional filter (0, "unspecified", when absent: any).
fn wire<F: Copy + Into<i32>>(filter: Option<F>) -> i32 {
    filter.map_or(0, Into::into)
}

macro_rules! wire_value {
    ($($filter:ty),*) => {$(
        impl From<$filter> for i32 {
            fn from(filter: $filter) -> i32 {
                filter as i32
            }
        }
    )*};
}
wire_value!(RoleFilter, KindFilter, PillarFilter, ProjectStatusFilter, TreatmentFilter, CommitmentStatusFilter);

#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    /// Show this participant (e.g. JP) with its role history, instead of a list.
    pub code: Option<String>,
    /// Only participants with this role.
    #[arg(long, value_enum, conflicts_with = "code")]
    pub role: Option<RoleFilter>,
    /// Only states, or only organisations.
    #[arg(long, value_enum, conflicts_with = "code")]
    pub kind: Option<KindFilter>,
    /// List withdrawn participants too.
    #[arg(long, conflicts_with = "code")]
    pub include_withdrawn: bool,
}

#[derive(Debug, Args)]
pub struct ProjectsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    /// Show this project (its UUID) with its status timeline, instead of a list.
    pub project_id: Option<String>,
    /// Only projects of this pillar.
    #[arg(long, value_enum, conflicts_with = "project_id")]
    pub pillar: Option<PillarFilter>,
    /// Only projects with this status.
    #[arg(long, value_enum, conflicts_with = "project_id")]
    pub status: Option<ProjectStatusFilter>,
    /// Only projects this participant hosts or partners in.
    #[arg(long, value_name = "CODE", conflicts_with = "project_id")]
    pub member: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportRulesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    /// Show this rule (e.g. us-cn-nvidia-h200) with its full timeline, instead of a list.
    pub rule_id: Option<String>,
    /// The terms in force on this date (YYYY-MM-DD), as the ledger knows them at the position
    /// answered; a rule with no change in force yet on that date is left out.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub effective_on: Option<String>,
    /// Only rules on this item (e.g. "Nvidia H200").
    #[arg(long, conflicts_with = "rule_id")]
    pub item: Option<String>,
    /// Only rules from this jurisdiction (e.g. US).
    #[arg(long, value_name = "CODE", conflicts_with = "rule_id")]
    pub origin: Option<String>,
    /// Only rules to this jurisdiction (e.g. CN).
    #[arg(long, value_name = "CODE", conflicts_with = "rule_id")]
    pub destination: Option<String>,
    /// Only rules with this treatment.
    #[arg(long, value_enum, conflicts_with = "rule_id")]
    pub treatment: Option<TreatmentFilter>,
}

#[derive(Debug, Args)]
pub struct CommitmentsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    /// Only commitments with this status (overdue: open and due before --on).
    #[arg(long, value_enum)]
    pub status: Option<CommitmentStatusFilter>,
    /// Only commitments of this member.
    #[arg(long, value_name = "CODE")]
    pub member: Option<String>,
    /// Only commitments of this pillar.
    #[arg(long, value_enum)]
    pub pillar: Option<PillarFilter>,
    /// Only commitments towards this project (its UUID).
    #[arg(long, value_name = "PROJECT_ID")]
    pub project: Option<String>,
    /// The day "overdue" is judged on (YYYY-MM-DD) [default: today, UTC]
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub on: Option<String>,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    /// The day "overdue" is judged on (YYYY-MM-DD) [default: today, UTC]
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub on: Option<String>,
}

// ------------------------------------------------------------------------------------------
// Connecting

type Connection = InterceptedService<Channel, super::client::BearerToken>;

use super::client::connect_channel as connect;

async fn query_client(args: &ClientArgs) -> anyhow::Result<QueryServiceClient<Connection>> {
    Ok(QueryServiceClient::new(connect(args).await?)
        .max_decoding_message_size(crate::server::REQUEST_BYTES_MAX)
        .max_encoding_message_size(crate::server::REQUEST_BYTES_MAX))
}

async fn projection_client(args: &ClientArgs) -> anyhow::Result<ProjectionServiceClient<Connection>> {
    Ok(ProjectionServiceClient::new(connect(args).await?)
        .max_decoding_message_size(crate::server::REQUEST_BYTES_MAX)
        .max_encoding_message_size(crate::server::REQUEST_BYTES_MAX))
}

pub(super) use super::client::{status_error, status_text};

// ------------------------------------------------------------------------------------------
// Printing

/// Writes whole lines to stdout, flushing each; once its reader closes stdout (`| head`), the
/// rest is dropped quietly.
struct Out {
    closed: bool,
}

impl Out {
    fn line(&mut self, text: &str) -> anyhow::Result<()> {
        super::client::write_line(&mut self.closed, text)
    }

    fn json(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        self.line(&serde_json::to_string(value)?)
    }

    /// `key  value` lines with the values aligned.
    fn block(&mut self, pairs: &[(&str, String)]) -> anyhow::Result<()> {
        let width = pairs.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
        for (key, value) in pairs {
            self.line(format!("{key:<width$}  {value}").trim_end())?;
        }
        Ok(())
    }

    /// A table: upper-case headers, columns as wide as their widest cell, `right` columns
    /// right-aligned (numbers), the last column unpadded. Nothing when there are no rows.
    fn table(&mut self, headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
        for row in std::iter::once(&header).chain(rows) {
            let last = row.len() - 1;
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| match (right[i], i == last) {
                    (true, _) => format!("{cell:>width$}", width = widths[i]),
                    (false, true) => cell.clone(),
                    (false, false) => format!("{cell:<width$}", width = widths[i]),
                })
                .collect();
            self.line(cells.join("  ").trim_end())?;
        }
        Ok(())
    }
}

/// A list being printed: JSON lines as each page arrives, or table rows gathered to the end.
struct Listing {
    out: Out,
    output: Output,
    headers: &'static [&'static str],
    right: &'static [bool],
    rows: Vec<Vec<String>>,
    count: usize,
    /// The position of the first page, which every page of the list reflects.
    position: Option<u64>,
}

impl Listing {
    fn new(output: Output, headers: &'static [&'static str], right: &'static [bool]) -> Self {
        Self { out: Out { closed: false }, output, headers, right, rows: Vec::new(), count: 0, position: None }
    }

    /// One entity: `line` makes its JSON line, `row` its table row (only the one needed is made).
    fn add<L: Serialize>(&mut self, line: impl FnOnce() -> L, row: impl FnOnce() -> Vec<String>) -> anyhow::Result<()> {
        self.count += 1;
        match self.output {
            Output::Json => self.out.json(&line()),
            Output::Table => {
                self.rows.push(row());
                Ok(())
            }
        }
    }

    /// Notes a page's position; the token of the next page, if the list goes on and stdout is
    /// still read.
    fn next_page(&mut self, position: u64, next_page_token: String) -> Option<String> {
        self.position.get_or_insert(position);
        (!next_page_token.is_empty() && !self.out.closed).then_some(next_page_token)
    }

    /// Prints the table, if any, and its last line: `(13 members at position 19)`.
    fn finish(mut self, one: &str, many: &str) -> anyhow::Result<ExitCode> {
        if self.output == Output::Table {
            self.out.table(self.headers, self.right, &self.rows)?;
            let noun = if self.count == 1 { one } else { many };
            self.out.line(&format!("({} {noun} at position {})", self.count, self.position.unwrap_or_default()))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A wire time to the whole second, for tables.
fn table_time(t: Option<&prost_types::Timestamp>) -> String {
    format_time(t.map(|t| prost_types::Timestamp { nanos: 0, ..*t }).as_ref()).unwrap_or_default()
}

/// A wire enum value in the lower snake_case of DESIGN.md §1 (`allowed_with_levy`): its proto
/// name without the enumeration's prefix. A value this client does not know (from a newer
/// server) is written as its number rather than hidden.
fn enum_name<E: TryFrom<i32>>(value: i32, prefix: &str, proto_name: fn(&E) -> &'static str) -> Value {
    match E::try_from(value) {
        Ok(known) => {
            let name = proto_name(&known);
            Value::from(name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase())
        }
        Err(_) => Value::from(value),
    }
}

fn role(value: i32) -> Value {
    enum_name(value, "MEMBER_ROLE_", pb::MemberRole::as_str_name)
}

fn kind(value: i32) -> Value {
    enum_name(value, "MEMBER_KIND_", pb::MemberKind::as_str_name)
}

fn pillar(value: i32) -> Value {
    enum_name(value, "PILLAR_", pb::Pillar::as_str_name)
}

fn project_status(value: i32) -> Value {
    enum_name(value, "PROJECT_STATUS_", pb::ProjectStatus::as_str_name)
}

fn treatment(value: i32) -> Value {
    enum_name(value, "TREATMENT_", pb::Treatment::as_str_name)
}

fn commitment_status(value: i32) -> Value {
    enum_name(value, "COMMITMENT_STATUS_", pb::CommitmentStatus::as_str_name)
}

/// A JSON value as a table cell: strings without their quotes.
fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn join(values: &[Value]) -> String {
    values.iter().map(cell).collect::<Vec<_>>().join(", ")
}

fn optional(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

// ------------------------------------------------------------------------------------------
// JSON lines

/// Where an entity's events sit in the log, and when they were recorded and took effect.
#[derive(Serialize)]
struct ProvenanceLine<'a> {
    stream: &'a str,
    revision: u64,
    first_position: u64,
    last_position: u64,
    first_recorded_at: Option<String>,
    last_recorded_at: Option<String>,
    first_effective_at: Option<String>,
    last_effective_at: Option<String>,
    first_recorded_by: &'a str,
    last_recorded_by: &'a str,
}

impl<'a> ProvenanceLine<'a> {
    fn new(p: Option<&'a pb::Provenance>) -> Option<Self> {
        let p = p?;
        Some(Self {
            stream: &p.stream,
            revision: p.revision,
            first_position: p.first_position,
            last_position: p.last_position,
            first_recorded_at: format_time(p.created_time.as_ref()),
            last_recorded_at: format_time(p.updated_time.as_ref()),
            first_effective_at: format_time(p.effective_time.as_ref()),
            last_effective_at: format_time(p.last_effective_time.as_ref()),
            first_recorded_by: &p.created_by,
            last_recorded_by: &p.updated_by,
        })
    }
}

/// One event of an entity's history, as `history` names its fields.
#[derive(Serialize)]
struct ChangeLine<'a> {
    position: u64,
    revision: u64,
    #[serde(rename = "type")]
    event_type: &'a str,
    recorded_at: Option<String>,
    effective_at: Option<String>,
    actor: &'a str,
}

impl<'a> ChangeLine<'a> {
    fn new(c: &'a pb::Change) -> Self {
        Self {
            position: c.position,
            revision: c.revision,
            event_type: &c.event_type,
            recorded_at: format_time(c.record_time.as_ref()),
            effective_at: format_time(c.effective_time.as_ref()),
            actor: &c.actor,
        }
    }
}

const CHANGE_HEADERS: &[&str] = &["position", "revision", "type", "recorded_at", "effective_at", "actor"];
const CHANGE_RIGHT: &[bool] = &[true, true, false, false, false, false];

fn change_row(c: &pb::Change) -> Vec<String> {
    vec![
        c.position.to_string(),
        c.revision.to_string(),
        c.event_type.clone(),
        table_time(c.record_time.as_ref()),
        table_time(c.effective_time.as_ref()),
        c.actor.clone(),
    ]
}

#[derive(Serialize)]
struct MemberLine<'a> {
    position: u64,
    code: &'a str,
    name: &'a str,
    kind: Value,
    role: Value,
    withdrawn: bool,
    /// When it joined and withdrew, in the world.
    joined_at: Option<String>,
    withdrawn_at: Option<String>,
    role_history: Vec<Value>,
    /// GetMember only.
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Vec<ChangeLine<'a>>>,
    provenance: Option<ProvenanceLine<'a>>,
}

impl<'a> MemberLine<'a> {
    fn new(position: u64, m: &'a pb::Member, with_changes: bool) -> Self {
        Self {
            position,
            code: &m.code,
            name: &m.name,
            kind: kind(m.kind),
            role: role(m.role),
            withdrawn: m.withdrawn,
            joined_at: format_time(m.joined_time.as_ref()),
            withdrawn_at: format_time(m.withdrawn_time.as_ref()),
            role_history: m.role_history.iter().map(|r| role(*r)).collect(),
            changes: with_changes.then(|| m.changes.iter().map(ChangeLine::new).collect()),
            provenance: ProvenanceLine::new(m.provenance.as_ref()),
        }
    }
}

const MEMBER_HEADERS: &[&str] = &["code", "role", "kind", "joined_at", "withdrawn_at", "name"];
const MEMBER_RIGHT: &[bool] = &[false; 6];

fn member_row(m: &pb::Member) -> Vec<String> {
    vec![
        m.code.clone(),
        cell(&role(m.role)),
        cell(&kind(m.kind)),
        table_time(m.joined_time.as_ref()),
        if m.withdrawn { table_time(m.withdrawn_time.as_ref()) } else { String::new() },
        m.name.clone(),
    ]
}

#[derive(Serialize)]
struct ProjectLine<'a> {
    position: u64,
    project_id: &'a str,
    title: &'a str,
    pillar: Value,
    host: &'a str,
    partners: &'a [String],
    companies: &'a [String],
    description: &'a str,
    status: Value,
    status_history: Vec<Value>,
    /// GetProject only.
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Vec<ChangeLine<'a>>>,
    provenance: Option<ProvenanceLine<'a>>,
}

impl<'a> ProjectLine<'a> {
    fn new(position: u64, p: &'a pb::Project, with_changes: bool) -> Self {
        Self {
            position,
            project_id: &p.project_id,
            title: &p.title,
            pillar: pillar(p.pillar),
            host: &p.host,
            partners: &p.partners,
            companies: &p.companies,
            description: &p.description,
            status: project_status(p.status),
            status_history: p.status_history.iter().map(|s| project_status(*s)).collect(),
            changes: with_changes.then(|| p.changes.iter().map(ChangeLine::new).collect()),
            provenance: ProvenanceLine::new(p.provenance.as_ref()),
        }
    }
}

const PROJECT_HEADERS: &[&str] = &["project_id", "pillar", "status", "host", "partners", "title"];
const PROJECT_RIGHT: &[bool] = &[false; 6];

fn project_row(p: &pb::Project) -> Vec<String> {
    vec![
        p.project_id.clone(),
        cell(&pillar(p.pillar)),
        cell(&project_status(p.status)),
        p.host.clone(),
        p.partners.join(","),
        p.title.clone(),
    ]
}

/// The terms of an export rule, flattened into the object that carries them.
#[derive(Serialize)]
struct TermsLine<'a> {
    item: &'a str,
    origin: &'a str,
    destination: &'a str,
    treatment: Value,
    levy_bps: Option<u32>,
    effective_from: &'a str,
    authority: &'a str,
}

impl<'a> TermsLine<'a> {
    fn new(t: &'a pb::ExportRuleTerms) -> Self {
        Self {
            item: &t.item,
            origin: &t.origin,
            destination: &t.destination,
            treatment: treatment(t.treatment),
            levy_bps: t.levy_bps,
            effective_from: &t.effective_from,
            authority: &t.authority,
        }
    }
}

#[derive(Serialize)]
struct ExportRuleLine<'a> {
    position: u64,
    rule_id: &'a str,
    #[serde(flatten)]
    terms: Option<TermsLine<'a>>,
    /// How many changes the rule has had.
    changes: u64,
    /// GetExportRule only: the changes in log order (the latest 1,000 at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<TimelineLine<'a>>>,
    /// GetExportRule only: earlier changes left out of `timeline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline_omitted: Option<u64>,
    provenance: Option<ProvenanceLine<'a>>,
}

/// One change of an export rule: the event, then the terms it set.
#[derive(Serialize)]
struct TimelineLine<'a> {
    #[serde(flatten)]
    change: Option<ChangeLine<'a>>,
    #[serde(flatten)]
    terms: Option<TermsLine<'a>>,
}

impl<'a> ExportRuleLine<'a> {
    fn new(position: u64, r: &'a pb::ExportRule, with_timeline: bool) -> Self {
        let timeline = r.timeline.iter().map(|c| TimelineLine {
            change: c.change.as_ref().map(ChangeLine::new),
            terms: c.terms.as_ref().map(TermsLine::new),
        });
        Self {
            position,
            rule_id: &r.rule_id,
            terms: r.terms.as_ref().map(TermsLine::new),
            changes: r.changes,
            timeline: with_timeline.then(|| timeline.collect()),
            timeline_omitted: with_timeline.then_some(r.timeline_omitted),
            provenance: ProvenanceLine::new(r.provenance.as_ref()),
        }
    }
}

const RULE_HEADERS: &[&str] =
    &["rule_id", "item", "origin", "destination", "treatment", "levy_bps", "effective_from", "authority"];
const RULE_RIGHT: &[bool] = &[false, false, false, false, false, true, false, false];

/// The cells of a rule's terms, from `item` to `authority`.
fn terms_cells(t: Option<&pb::ExportRuleTerms>) -> Vec<String> {
    let Some(t) = t else { return vec![String::new(); 7] };
    vec![
        t.item.clone(),
        t.origin.clone(),
        t.destination.clone(),
        cell(&treatment(t.treatment)),
        t.levy_bps.map(|l| l.to_string()).unwrap_or_default(),
        t.effective_from.clone(),
        t.authority.clone(),
    ]
}

fn rule_row(r: &pb::ExportRule) -> Vec<String> {
    let mut row = vec![r.rule_id.clone()];
    row.extend(terms_cells(r.terms.as_ref()));
    row
}

#[derive(Serialize)]
struct CommitmentLine<'a> {
    position: u64,
    commitment_id: &'a str,
    member: &'a str,
    pillar: Value,
    description: &'a str,
    project_id: Option<&'a str>,
    due_on: &'a str,
    /// open, fulfilled or withdrawn.
    status: Value,
    /// Open and due before the `--on` date.
    overdue: bool,
    /// The evidence (fulfilled) or the reason (withdrawn).
    resolution: Option<&'a str>,
    provenance: Option<ProvenanceLine<'a>>,
}

impl<'a> CommitmentLine<'a> {
    fn new(position: u64, c: &'a pb::Commitment) -> Self {
        Self {
            position,
            commitment_id: &c.commitment_id,
            member: &c.member,
            pillar: pillar(c.pillar),
            description: &c.description,
            project_id: optional(&c.project_id),
            due_on: &c.due_on,
            status: commitment_status(c.status),
            overdue: c.overdue,
            resolution: optional(&c.resolution),
            provenance: ProvenanceLine::new(c.provenance.as_ref()),
        }
    }
}

const COMMITMENT_HEADERS: &[&str] =
    &["commitment_id", "member", "pillar", "status", "due_on", "project_id", "description"];
const COMMITMENT_RIGHT: &[bool] = &[false; 7];

fn commitment_row(c: &pb::Commitment) -> Vec<String> {
    let status = cell(&commitment_status(c.status));
    vec![
        c.commitment_id.clone(),
        c.member.clone(),
        cell(&pillar(c.pillar)),
        if c.overdue { format!("{status} (overdue)") } else { status },
        c.due_on.clone(),
        c.project_id.clone(),
        c.description.clone(),
    ]
}

/// Counts per value, as a JSON object in the server's order: `{"member": 9, "guest": 4}`.
struct Counts<'a>(&'a [pb::Count]);

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for count in self.0 {
            map.serialize_entry(&count.key, &count.count)?;
        }
        map.end()
    }
}

impl Counts<'_> {
    /// `member 9, guest 4`, or `none`.
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        self.0.iter().map(|c| format!("{} {}", c.key, c.count)).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Serialize)]
struct SummaryLine<'a> {
    position: u64,
    /// Participants still taking part, per role.
    members_by_role: Counts<'a>,
    members_withdrawn: u64,
    projects_by_pillar: Counts<'a>,
    projects_by_status: Counts<'a>,
    commitments_by_status: Counts<'a>,
    commitments_by_pillar: Counts<'a>,
    commitments_overdue: u64,
    export_rules_by_treatment: Counts<'a>,
    summits: u64,
}

#[derive(Serialize)]
struct ProgressLine {
    events_done: u64,
    events_total: u64,
    events_per_sec: u64,
    seconds: f64,
}

impl ProgressLine {
    fn new(p: &pb::RebuildProgress) -> Self {
        Self {
            events_done: p.events_done,
            events_total: p.events_total,
            events_per_sec: p.events_per_second.round() as u64,
            seconds: p.seconds,
        }
    }
}

#[derive(Serialize)]
struct RebuildLine<'a> {
    /// The position the rebuilt views reflected when they went live, and their digest there.
    position: u64,
    view_digest: &'a str,
    records: u64,
    events: u64,
    seconds: f64,
    events_per_sec: u64,
    generation: u32,
    started_at: Option<String>,
}

impl<'a> RebuildLine<'a> {
    fn new(r: &'a pb::RebuildResult) -> Self {
        Self {
            position: r.position,
            view_digest: &r.view_digest,
            records: r.records,
            events: r.events,
            seconds: r.seconds,
            events_per_sec: r.events_per_second.round() as u64,
            generation: r.generation,
            started_at: format_time(r.started_time.as_ref()),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} events in {:.2} s ({} events/s), generation {}, live at position {}",
            self.events, self.seconds, self.events_per_sec, self.generation, self.position
        )
    }
}

#[derive(Serialize)]
struct StatusLine<'a> {
    position: u64,
    log_position: u64,
    lag: u64,
    view_digest: &'a str,
    records: u64,
    generation: u32,
    rebuilding: bool,
    rebuild_progress: Option<ProgressLine>,
    last_rebuild: Option<RebuildLine<'a>>,
}

// ------------------------------------------------------------------------------------------
// The commands

/// `members [CODE]`: every participant (page after page), or one with its role history.
pub async fn members(args: MembersArgs) -> anyhow::Result<ExitCode> {
    let mut client = query_client(&args.client).await?;
    let consistency = args.consistency.to_pb();
    if let Some(code) = args.code {
        let request = pb::GetMemberRequest { code, consistency };
        let answer = client.get_member(request).await.map_err(status_error)?.into_inner();
        let member = answer.member.unwrap_or_default();
        if args.client.output == Output::Json {
            return print_json(&MemberLine::new(answer.position, &member, true));
        }
        let roles: Vec<Value> = member.role_history.iter().map(|r| role(*r)).collect();
        return print_entity(
            Rows { headers: MEMBER_HEADERS, right: MEMBER_RIGHT, rows: vec![member_row(&member)] },
            &[("role_history", join(&roles))],
            Rows {
                headers: CHANGE_HEADERS,
                right: CHANGE_RIGHT,
                rows: member.changes.iter().map(change_row).collect(),
            },
            &format!("member {} at position {}", member.code, answer.position),
        );
    }
    let mut listing = Listing::new(args.client.output, MEMBER_HEADERS, MEMBER_RIGHT);
    let mut page_token = String::new();
    loop {
        let request = pb::ListMembersRequest {
            page_size: LIST_PAGE_MAX,
            page_token,
            consistency,
            role: wire(args.role),
            kind: wire(args.kind),
            include_withdrawn: args.include_withdrawn,
        };
        let page = client.list_members(request).await.map_err(status_error)?.into_inner();
        for member in &page.members {
            listing.add(|| MemberLine::new(page.position, member, false), || member_row(member))?;
        }
        match listing.next_page(page.position, page.next_page_token) {
            Some(next) => page_token = next,
            None => return listing.finish("member", "members"),
        }
    }
}

/// `projects [PROJECT_ID]`: every project, or one with its status timeline.
pub async fn projects(args: ProjectsArgs) -> anyhow::Result<ExitCode> {
    let mut client = query_client(&args.client).await?;
    let consistency = args.consistency.to_pb();
    if let Some(project_id) = args.project_id {
        let request = pb::GetProjectRequest { project_id, consistency };
        let answer = client.get_project(request).await.map_err(status_error)?.into_inner();
        let project = answer.project.unwrap_or_default();
        if args.client.output == Output::Json {
            return print_json(&ProjectLine::new(answer.position, &project, true));
        }
        let statuses: Vec<Value> = project.status_history.iter().map(|s| project_status(*s)).collect();
        return print_entity(
            Rows { headers: PROJECT_HEADERS, right: PROJECT_RIGHT, rows: vec![project_row(&project)] },
            &[
                ("companies", project.companies.join(", ")),
                ("status_history", join(&statuses)),
                ("description", project.description.clone()),
            ],
            Rows {
                headers: CHANGE_HEADERS,
                right: CHANGE_RIGHT,
                rows: project.changes.iter().map(change_row).collect(),
            },
            &format!("project {} at position {}", project.project_id, answer.position),
        );
    }
    let mut listing = Listing::new(args.client.output, PROJECT_HEADERS, PROJECT_RIGHT);
    let mut page_token = String::new();
    loop {
        let request = pb::ListProjectsRequest {
            page_size: LIST_PAGE_MAX,
            page_token,
            consistency,
            pillar: wire(args.pillar),
            status: wire(args.status),
            member: args.member.clone().unwrap_or_default(),
        };
        let page = client.list_projects(request).await.map_err(status_error)?.into_inner();
        for project in &page.projects {
            listing.add(|| ProjectLine::new(page.position, project, false), || project_row(project))?;
        }
        match listing.next_page(page.position, page.next_page_token) {
            Some(next) => page_token = next,
            None => return listing.finish("project", "projects"),
        }
    }
}

/// `export-rules [RULE_ID]`: the terms in force of every rule, or one rule with its timeline.
pub async fn export_rules(args: ExportRulesArgs) -> anyhow::Result<ExitCode> {
    let mut client = query_client(&args.client).await?;
    let consistency = args.consistency.to_pb();
    let effective_on = args.effective_on.unwrap_or_default();
    if let Some(rule_id) = args.rule_id {
        let request = pb::GetExportRuleRequest { rule_id, consistency, effective_on };
        let answer = client.get_export_rule(request).await.map_err(status_error)?.into_inner();
        let rule = answer.rule.unwrap_or_default();
        if args.client.output == Output::Json {
            return print_json(&ExportRuleLine::new(answer.position, &rule, true));
        }
        let timeline = rule.timeline.iter().map(|c| {
            let mut row = c.change.as_ref().map(change_row).unwrap_or_else(|| vec![String::new(); 5]);
            row.extend(terms_cells(c.terms.as_ref()));
            row
        });
        return print_entity(
            Rows { headers: RULE_HEADERS, right: RULE_RIGHT, rows: vec![rule_row(&rule)] },
            &[("changes", rule.changes.to_string())],
            Rows { headers: TIMELINE_HEADERS, right: TIMELINE_RIGHT, rows: timeline.collect() },
            &format!("export rule {} at position {}", rule.rule_id, answer.position),
        );
    }
    let mut listing = Listing::new(args.client.output, RULE_HEADERS, RULE_RIGHT);
    let mut page_token = String::new();
    loop {
        let request = pb::ListExportRulesRequest {
            page_size: LIST_PAGE_MAX,
            page_token,
            consistency,
            effective_on: effective_on.clone(),
            item: args.item.clone().unwrap_or_default(),
            origin: args.origin.clone().unwrap_or_default(),
            destination: args.destination.clone().unwrap_or_default(),
            treatment: wire(args.treatment),
        };
        let page = client.list_export_rules(request).await.map_err(status_error)?.into_inner();
        for rule in &page.rules {
            listing.add(|| ExportRuleLine::new(page.position, rule, false), || rule_row(rule))?;
        }
        match listing.next_page(page.position, page.next_page_token) {
            Some(next) => page_token = next,
            None => return listing.finish("export rule", "export rules"),
        }
    }
}

const TIMELINE_HEADERS: &[&str] = &[
    "position",
    "revision",
    "type",
    "recorded_at",
    "effective_at",
    "item",
    "origin",
    "destination",
    "treatment",
    "levy_bps",
    "effective_from",
    "authority",
];
const TIMELINE_RIGHT: &[bool] = &[true, true, false, false, false, false, false, false, false, true, false, false];

/// `commitments`: every commitment that matches the filters.
pub async fn commitments(args: CommitmentsArgs) -> anyhow::Result<ExitCode> {
    let mut client = query_client(&args.client).await?;
    let consistency = args.consistency.to_pb();
    let mut listing = Listing::new(args.client.output, COMMITMENT_HEADERS, COMMITMENT_RIGHT);
    let mut page_token = String::new();
    loop {
        let request = pb::ListCommitmentsRequest {
            page_size: LIST_PAGE_MAX,
            page_token,
            consistency,
            status: wire(args.status),
            member: args.member.clone().unwrap_or_default(),
            pillar: wire(args.pillar),
            project_id: args.project.clone().unwrap_or_default(),
            on: args.on.clone().unwrap_or_default(),
        };
        let page = client.list_commitments(request).await.map_err(status_error)?.into_inner();
        for commitment in &page.commitments {
            listing.add(|| CommitmentLine::new(page.position, commitment), || commitment_row(commitment))?;
        }
        match listing.next_page(page.position, page.next_page_token) {
            Some(next) => page_token = next,
            None => return listing.finish("commitment", "commitments"),
        }
    }
}

/// Table rows with their headers and right-aligned (numeric) columns.
struct Rows {
    headers: &'static [&'static str],
    right: &'static [bool],
    rows: Vec<Vec<String>>,
}

/// Prints one entity's JSON line.
fn print_json(line: &impl Serialize) -> anyhow::Result<ExitCode> {
    Out { closed: false }.json(line)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints one entity for people: its row, more of its fields, the events behind it, and a last
/// line `(what)`.
fn print_entity(entity: Rows, more: &[(&str, String)], history: Rows, what: &str) -> anyhow::Result<ExitCode> {
    let mut out = Out { closed: false };
    out.table(entity.headers, entity.right, &entity.rows)?;
    out.line("")?;
    out.block(more)?;
    out.line("")?;
    out.table(history.headers, history.right, &history.rows)?;
    out.line(&format!("({what})"))?;
    Ok(ExitCode::SUCCESS)
}

/// `summary`: how many participants, projects, commitments, export rules and summits.
pub async fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let mut client = query_client(&args.client).await?;
    let request =
        pb::GetSummaryRequest { consistency: args.consistency.to_pb(), on: args.on.clone().unwrap_or_default() };
    let s = client.get_summary(request).await.map_err(status_error)?.into_inner();
    let line = SummaryLine {
        position: s.position,
        members_by_role: Counts(&s.members_by_role),
        members_withdrawn: s.members_withdrawn,
        projects_by_pillar: Counts(&s.projects_by_pillar),
        projects_by_status: Counts(&s.projects_by_status),
        commitments_by_status: Counts(&s.commitments_by_status),
        commitments_by_pillar: Counts(&s.commitments_by_pillar),
        commitments_overdue: s.commitments_overdue,
        export_rules_by_treatment: Counts(&s.export_rules_by_treatment),
        summits: s.summits,
    };
    let mut out = Out { closed: false };
    match args.client.output {
        Output::Json => out.json(&line)?,
        Output::Table => out.block(&[
            ("participants", format!("{} (withdrawn: {})", line.members_by_role.text(), line.members_withdrawn)),
            ("projects by pillar", line.projects_by_pillar.text()),
            ("projects by status", line.projects_by_status.text()),
            ("commitments by status", line.commitments_by_status.text()),
            ("commitments by pillar", line.commitments_by_pillar.text()),
            ("commitments overdue", line.commitments_overdue.to_string()),
            ("export rules", line.export_rules_by_treatment.text()),
            ("summits", line.summits.to_string()),
            ("position", line.position.to_string()),
        ])?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `status`: where the views stand against the log, their digest, and any rebuild.
pub async fn status(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = projection_client(&args).await?;
    let s = client.get_projection_status(pb::GetProjectionStatusRequest {}).await.map_err(status_error)?.into_inner();
    let line = StatusLine {
        position: s.position,
        log_position: s.log_position,
        lag: s.lag,
        view_digest: &s.view_digest,
        records: s.records,
        generation: s.generation,
        rebuilding: s.rebuilding,
        rebuild_progress: s.rebuilding.then(|| s.rebuild_progress.as_ref().map(ProgressLine::new)).flatten(),
        last_rebuild: s.last_rebuild.as_ref().map(RebuildLine::new),
    };
    let mut out = Out { closed: false };
    match args.output {
        Output::Json => out.json(&line)?,
        Output::Table => {
            let rebuilding = match &line.rebuild_progress {
                Some(p) => format!("yes: {}/{} events, {} events/s", p.events_done, p.events_total, p.events_per_sec),
                None if line.rebuilding => "yes".to_owned(),
                None => "no".to_owned(),
            };
            out.block(&[
                ("position", line.position.to_string()),
                ("log_position", line.log_position.to_string()),
                ("lag", line.lag.to_string()),
                ("view_digest", line.view_digest.to_owned()),
                ("records", line.records.to_string()),
                ("generation", line.generation.to_string()),
                ("rebuilding", rebuilding),
                (
                    "last_rebuild",
                    line.last_rebuild.as_ref().map_or_else(|| "none since start".to_owned(), |r| r.text()),
                ),
            ])?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rebuild`: folds the whole log into fresh views, shows progress on a terminal, and prints
/// the result once the new views are live. A rebuild already running is FAILED_PRECONDITION.
pub async fn rebuild(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = projection_client(&args).await?;
    // Only for people watching: never in JSON output, never into a pipe or a CI log.
    let bar = if args.output == Output::Table && io::stderr().is_terminal() {
        let style = ProgressStyle::with_template(
            "{spinner} rebuilding the views [{wide_bar}] {human_pos}/{human_len} events, {msg} ({elapsed})",
        )
        .context("the progress bar's template")?
        .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
        bar.set_message("starting");
        bar
    } else {
        ProgressBar::hidden()
    };
    let outcome = follow_rebuild(&mut client, &bar).await;
    bar.finish_and_clear();
    let result = outcome?;
    let line = RebuildLine::new(&result);
    let mut out = Out { closed: false };
    match args.output {
        Output::Json => out.json(&line)?,
        Output::Table => out.block(&[
            ("position", line.position.to_string()),
            ("view_digest", line.view_digest.to_owned()),
            ("records", line.records.to_string()),
            ("events", line.events.to_string()),
            ("seconds", format!("{:.3}", line.seconds)),
            ("events_per_sec", line.events_per_sec.to_string()),
            ("generation", line.generation.to_string()),
        ])?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows the rebuild's stream to its result, moving `bar` with each progress message.
async fn follow_rebuild(
    client: &mut ProjectionServiceClient<Connection>,
    bar: &ProgressBar,
) -> anyhow::Result<pb::RebuildResult> {
    use pb::rebuild_projections_response::Update;
    let mut stream =
        client.rebuild_projections(pb::RebuildProjectionsRequest {}).await.map_err(status_error)?.into_inner();
    while let Some(message) = stream.message().await.map_err(status_error)? {
        match message.update {
            Some(Update::Progress(p)) => {
                bar.set_length(p.events_total);
                bar.set_position(p.events_done);
                bar.set_message(format!("{:.0} events/s", p.events_per_second));
            }
            Some(Update::Result(result)) => return Ok(result),
            None => {}
        }
    }
    anyhow::bail!("the server ended the rebuild without a result")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_a_position_or_an_rfc3339_time() {
        assert_eq!(parse_as_of("0"), Ok(AsOf::Position(0)));
        assert_eq!(parse_as_of("15"), Ok(AsOf::Position(15)));
        assert_eq!(
            parse_as_of("2025-12-11T01:00:00+01:00"),
            Ok(AsOf::Time(prost_types::Timestamp { seconds: 1_765_411_200, nanos: 0 }))
        );
        for bad in ["yesterday", "2025-12-11", "-1", "1.5", ""] {
            let error = parse_as_of(bad).unwrap_err();
            assert!(error.contains("log position") && error.contains("RFC 3339"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(parse_date("2025-12-11"), Ok("2025-12-11".to_owned()));
        for bad in ["2025-12-32", "2025-1-1", "11/12/2025", "2025-12-11T00:00:00Z"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enum_values_are_lower_snake_case() {
        assert_eq!(treatment(pb::Treatment::AllowedWithLevy as i32), "allowed_with_levy");
        assert_eq!(pillar(pb::Pillar::CriticalMinerals as i32), "critical_minerals");
        assert_eq!(project_status(pb::ProjectStatus::UnderWay as i32), "under_way");
        assert_eq!(role(pb::MemberRole::Guest as i32), "guest");
        assert_eq!(kind(pb::MemberKind::Organization as i32), "organization");
        assert_eq!(commitment_status(pb::CommitmentStatus::Overdue as i32), "overdue");
        assert_eq!(role(99), 99, "a value from a newer server is shown as its number");
    }

    /// Every value of a filter flag is spelled as the JSON output spells the wire value it sends.
    fn check_filter<F: ValueEnum + Copy + Into<i32>>(name_of: fn(i32) -> Value) {
        for flag in F::value_variants() {
            let value: i32 = (*flag).into();
            assert_ne!(value, 0, "a filter is never unspecified");
            assert_eq!(name_of(value), flag.to_possible_value().unwrap().get_name());
        }
    }

    #[test]
    fn filter_flags_name_their_wire_values() {
        check_filter::<RoleFilter>(role);
        check_filter::<KindFilter>(kind);
        check_filter::<PillarFilter>(pillar);
        check_filter::<ProjectStatusFilter>(project_status);
        check_filter::<TreatmentFilter>(treatment);
        check_filter::<CommitmentStatusFilter>(commitment_status);
        assert_eq!(wire::<RoleFilter>(None), 0);
    }

    #[test]
    fn status_errors_use_the_specification_names() {
        let check = |status: tonic::Status, expected: &str| assert_eq!(status_error(status).to_string(), expected);
        check(tonic::Status::failed_precondition("a rebuild is running"), "FAILED_PRECONDITION: a rebuild is running");
        check(tonic::Status::not_found("no member XX"), "NOT_FOUND: no member XX");
        check(tonic::Status::data_loss("x"), "DATA_LOSS: x");
        check(tonic::Status::ok("x"), "OK: x");
    }

    #[test]
    fn an_export_rule_line_flattens_its_terms() {
        let rule = pb::ExportRule {
            rule_id: "us-cn-nvidia-h200".into(),
            terms: Some(pb::ExportRuleTerms {
                item: "Nvidia H200".into(),
                origin: "US".into(),
                destination: "CN".into(),
                treatment: pb::Treatment::AllowedWithLevy as i32,
                levy_bps: Some(2500),
                effective_from: "2025-12-14".into(),
                authority: "President of the United States".into(),
            }),
            changes: 1,
            timeline: vec![],
            timeline_omitted: 0,
            provenance: None,
        };
        assert_eq!(
            serde_json::to_string(&ExportRuleLine::new(15, &rule, false)).unwrap(),
            r#"{"position":15,"rule_id":"us-cn-nvidia-h200","item":"Nvidia H200","origin":"US","destination":"CN","treatment":"allowed_with_levy","levy_bps":2500,"effective_from":"2025-12-14","authority":"President of the United States","changes":1,"provenance":null}"#
        );
    }
}
