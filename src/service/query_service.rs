//! `pax.ledger.v1.QueryService`: questions about the state of the initiative, answered from the
//! views at one log position (the live one, at least `min_position`, or as of a past position
//! or time), and `ProjectionService`: the views' status and their rebuild.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::page_token::{self, Query};
use super::{convert, status, views_convert};
use crate::domain::{
    CommitmentStatus, EntityState, FieldError, Jurisdiction, MemberCode, Position, ProjectId, RuleId, StreamName,
};
use crate::ledger::{AsOf, Ledger, RebuildOutcome, RebuildProgress, ViewsAt};
use crate::projection::{self, Category, ViewRecord};
use crate::proto::v1 as pb;

/// Page size of a list when the request leaves it at 0.
pub const LIST_PAGE_DEFAULT: usize = 50;
/// Largest page of a list; a larger `page_size` is served as this (AIP-158).
pub const LIST_PAGE_MAX: usize = 1000;
/// Longest a query waits for the views to reach `min_position` (or an as-of position), when
/// the call's own deadline is longer or absent.
pub const VIEWS_WAIT_MAX: Duration = Duration::from_secs(30);

pub struct QueryService {
    ledger: Arc<Ledger>,
}

impl QueryService {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }
}

type Result<T> = std::result::Result<T, Status>;

fn invalid(field: &str, description: impl Into<String>) -> Status {
    status::invalid_argument(FieldError::new(field, description))
}

fn page_size(raw: i32) -> Result<usize> {
    match raw {
        0 => Ok(LIST_PAGE_DEFAULT),
        n if n < 0 => Err(invalid("page_size", format!("must not be negative, got {n}"))),
        n => Ok((n as usize).min(LIST_PAGE_MAX)),
    }
}

/// How long the call may wait: most of its `grpc-timeout` (so that the answer, VIEWS_BEHIND
/// with where the views stand, reaches the caller before its own deadline cuts the call), at
/// most [`VIEWS_WAIT_MAX`].
fn wait_budget(metadata: &tonic::metadata::MetadataMap) -> Duration {
    let timeout = metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(|raw| {
        let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
        let amount: u64 = digits.parse().ok()?;
        Some(match unit {
            "H" => Duration::from_secs(amount.saturating_mul(3600)),
            "M" => Duration::from_secs(amount.saturating_mul(60)),
            "S" => Duration::from_secs(amount),
            "m" => Duration::from_millis(amount),
            "u" => Duration::from_micros(amount),
            "n" => Duration::from_nanos(amount),
            _ => return None,
        })
    });
    timeout.map_or(VIEWS_WAIT_MAX, |t| t.mul_f64(0.8).min(VIEWS_WAIT_MAX))
}

/// The consistency a request asks for, parsed.
struct Consistency {
    as_of: AsOf,
    min_position: Option<Position>,
}

impl Consistency {
    fn parse(raw: Option<&pb::Consistency>) -> Result<Self> {
        let Some(raw) = raw else { return Ok(Self { as_of: AsOf::Latest, min_position: None }) };
        let as_of = match (raw.as_of_position, &raw.as_of_time) {
            (Some(_), Some(_)) => {
                return Err(invalid("consistency.as_of_time", "give as_of_position or as_of_time, not both"));
            }
            (Some(position), None) => AsOf::Position(Position(position)),
            (None, Some(time)) => {
                AsOf::Time(convert::timestamp("consistency.as_of_time", time).map_err(status::invalid_argument)?)
            }
            (None, None) => AsOf::Latest,
        };
        let min_position = (raw.min_position > 0).then_some(Position(raw.min_position));
        Ok(Self { as_of, min_position })
    }

    /// Adds what pins a listing to the query's fingerprint (the position comes with the token).
    fn describe(&self, query: &mut Query) {
        match self.as_of {
            AsOf::Latest => query.number(0),
            AsOf::Position(p) => query.number(1).number(p.0),
            AsOf::Time(t) => query.number(2).text(&t.to_rfc3339()),
        };
        query.number(self.min_position.map_or(0, |p| p.0));
    }
}

/// One page of a listing, as asked.
struct Listing {
    /// The query's fingerprint: every parameter but the page's.
    query: Query,
    consistency: Consistency,
    page_token: String,
    page_size: usize,
    category: Category,
}

impl Listing {
    /// Parses the paging and consistency fields every list request has; `filters` adds the
    /// request's own parameters to the fingerprint its page tokens are bound to.
    fn new(
        rpc: &str,
        category: Category,
        page_size: i32,
        page_token: String,
        consistency: Option<&pb::Consistency>,
        filters: impl FnOnce(&mut Query),
    ) -> Result<Self> {
        let page_size = self::page_size(page_size)?;
        let consistency = Consistency::parse(consistency)?;
        let mut query = Query::new(rpc);
        filters(&mut query);
        consistency.describe(&mut query);
        Ok(Self { query, consistency, page_token, page_size, category })
    }
}

/// The position a listing's first page answered at, and the stream to continue after.
fn list_token(query: &Query, position: Position, after: &str) -> String {
    let mut payload = position.0.to_be_bytes().to_vec();
    payload.extend_from_slice(after.as_bytes());
    page_token::seal(query, &payload)
}

fn open_list_token(token: &str, query: &Query) -> Result<Option<(Position, String)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let payload = page_token::open(token, query).map_err(status::invalid_argument)?;
    let bad = || invalid("page_token", "is not a page token of this service");
    if payload.len() < 8 {
        return Err(bad());
    }
    let position = Position(u64::from_be_bytes(payload[..8].try_into().expect("8 bytes")));
    let after = String::from_utf8(payload[8..].to_vec()).map_err(|_| bad())?;
    Ok(Some((position, after)))
}

fn optional_date(field: &str, raw: &str) -> Result<Option<NaiveDate>> {
    if raw.is_empty() { Ok(None) } else { convert::date(field, raw).map(Some).map_err(status::invalid_argument) }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// An optional enum filter: 0 (unspecified) is "any"; an unknown value is INVALID_ARGUMENT.
fn enum_filter<T>(
    field: &str,
    raw: i32,
    parse: fn(&str, i32) -> std::result::Result<T, FieldError>,
) -> Result<Option<T>> {
    if raw == 0 { Ok(None) } else { parse(field, raw).map(Some).map_err(status::invalid_argument) }
}

fn optional_code(field: &str, raw: &str) -> Result<Option<MemberCode>> {
    if raw.is_empty() { Ok(None) } else { MemberCode::parse(field, raw).map(Some).map_err(status::invalid_argument) }
}

fn optional_jurisdiction(field: &str, raw: &str) -> Result<Option<Jurisdiction>> {
    if raw.is_empty() { Ok(None) } else { Jurisdiction::parse(field, raw).map(Some).map_err(status::invalid_argument) }
}

impl QueryService {
    /// The views a request reads: those of its token's position for a later page, else those
    /// its consistency asks for.
    async fn views_at(&self, consistency: &Consistency, pinned: Option<Position>, wait: Duration) -> Result<ViewsAt> {
        let (as_of, min_position) = match pinned {
            Some(position) => (AsOf::Position(position), None),
            None => (consistency.as_of, consistency.min_position),
        };
        self.ledger.views_at(as_of, min_position, wait).await.map_err(status::from_ledger)
    }

    /// Runs one page of a listing: resolves the views, lists the category with `select`, and
    /// seals the next token.
    async fn list<T: Send + 'static>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        listing: Listing,
        select: impl FnMut(&Ledger, &ViewsAt, ViewRecord) -> std::result::Result<Option<T>, crate::ledger::LedgerError>
        + Send
        + 'static,
    ) -> Result<(Vec<T>, String, Position)> {
        let Listing { query, consistency, page_token, page_size, category } = listing;
        let token = open_list_token(&page_token, &query)?;
        let pinned = token.as_ref().map(|(p, _)| *p);
        let at = self.views_at(&consistency, pinned, wait_budget(metadata)).await?;
        let ledger = self.ledger.clone();
        let after = token.map(|(_, after)| after);
        let mut select = select;
        let at_moved = at.clone();
        let page = tokio::task::spawn_blocking(move || {
            ledger.list_views(&at_moved, category, after.as_deref(), page_size, |r| select(&ledger, &at_moved, r))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status::from_ledger)?;
        let next = page.next_after.map(|after| list_token(&query, at.position, &after)).unwrap_or_default();
        Ok((page.items, next, at.position))
    }

    /// One entity at the position the request's consistency asks for, with its history:
    /// `answer` builds the response from the position, the record and its versions.
    async fn get<T: Send + 'static>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        consistency: Option<&pb::Consistency>,
        stream: StreamName,
        what: String,
        answer: impl FnOnce(&ViewsAt, &ViewRecord, Vec<projection::Version>) -> Result<T> + Send + 'static,
    ) -> Result<Response<T>> {
        let consistency = Consistency::parse(consistency)?;
        let at = self.views_at(&consistency, None, wait_budget(metadata)).await?;
        self.blocking(move |ledger| {
            let record = ledger.view(&at, &stream).map_err(status::from_ledger)?;
            let record = record.ok_or_else(|| not_found(format!("{what} not found"), &at))?;
            let versions = history(ledger, &at, &record)?;
            answer(&at, &record, versions).map(Response::new)
        })
        .await
    }

    /// Runs a blocking read of the views off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Ledger) -> std::result::Result<T, Status> + Send + 'static,
    ) -> Result<T> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || read(&ledger)).await.map_err(|e| Status::internal(e.to_string()))?
    }
}

/// The versions of a stream up to the position `at` reads at.
/// The versions of `record`'s stream up to the position `at` reads at: the record alone when it
/// has one event (most entities), else its stream's events folded again.
fn history(ledger: &Ledger, at: &ViewsAt, record: &ViewRecord) -> Result<Vec<projection::Version>> {
    if let Some(version) = projection::sole_version(record) {
        return Ok(vec![version]);
    }
    let events = ledger.stream_events(&record.stream, at.position).map_err(status::from_ledger)?;
    Ok(projection::versions(&events))
}

fn not_found(what: String, at: &ViewsAt) -> Status {
    status::from_ledger(crate::ledger::LedgerError::NotFound(format!("{what} (at position {})", at.position)))
}

/// The terms of an export rule in force on `date` (reading its timeline only when the record
/// alone cannot tell), or `None` if no change is in force yet.
fn terms_on(
    ledger: &Ledger,
    at: &ViewsAt,
    record: &ViewRecord,
    date: NaiveDate,
) -> std::result::Result<Option<crate::domain::ExportRuleState>, crate::ledger::LedgerError> {
    let EntityState::ExportRule(rule) = &record.state else { return Ok(None) };
    match projection::current_in_force(rule, date) {
        Some(true) => Ok(Some(rule.clone())),
        Some(false) => Ok(None),
        None => {
            let versions = projection::versions(&ledger.stream_events(&record.stream, at.position)?);
            Ok(projection::in_force_on(&versions, date).and_then(|v| match &v.record.state {
                EntityState::ExportRule(terms) => Some(terms.clone()),
                _ => None,
            }))
        }
    }
}

#[tonic::async_trait]
impl pb::query_service_server::QueryService for QueryService {
    #[tracing::instrument(skip_all, fields(code = %request.get_ref().code))]
    async fn get_member(&self, request: Request<pb::GetMemberRequest>) -> Result<Response<pb::GetMemberResponse>> {
        let (metadata, _, request) = request.into_parts();
        let code = MemberCode::parse("code", &request.code).map_err(status::invalid_argument)?;
        let stream = StreamName::member(&code);
        self.get(&metadata, request.consistency.as_ref(), stream, format!("member {code}"), |at, record, versions| {
            Ok(pb::GetMemberResponse { member: views_convert::member(record, &versions), position: at.position.0 })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>> {
        let (metadata, _, request) = request.into_parts();
        let role = enum_filter("role", request.role, convert::member_role)?;
        let kind = enum_filter("kind", request.kind, convert::member_kind)?;
        let include_withdrawn = request.include_withdrawn;
        let listing = Listing::new(
            "ListMembers",
            Category::Member,
            request.page_size,
            request.page_token,
            request.consistency.as_ref(),
            |q| {
                q.number(request.role as u64).number(request.kind as u64).number(u64::from(include_withdrawn));
            },
        )?;
        let (members, next_page_token, position) = self
            .list(&metadata, listing, move |_, _, record| {
                let EntityState::Member(m) = &record.state else { return Ok(None) };
                let admitted = (include_withdrawn || !m.withdrawn)
                    && role.is_none_or(|r| r == m.role)
                    && kind.is_none_or(|k| k == m.kind);
                Ok(admitted.then(|| views_convert::member(&record, &[])).flatten())
            })
            .await?;
        Ok(Response::new(pb::ListMembersResponse { members, next_page_token, position: position.0 }))
    }

    #[tracing::instrument(skip_all, fields(project_id = %request.get_ref().project_id))]
    async fn get_project(&self, request: Request<pb::GetProjectRequest>) -> Result<Response<pb::GetProjectResponse>> {
        let (metadata, _, request) = request.into_parts();
        let id = ProjectId::parse("project_id", &request.project_id).map_err(status::invalid_argument)?;
        let stream = StreamName::project(&id);
        self.get(&metadata, request.consistency.as_ref(), stream, format!("project {id}"), |at, record, versions| {
            Ok(pb::GetProjectResponse { project: views_convert::project(record, &versions), position: at.position.0 })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>> {
        let (metadata, _, request) = request.into_parts();
        let pillar = enum_filter("pillar", request.pillar, convert::pillar)?;
        let status = enum_filter("status", request.status, convert::project_status)?;
        let member = optional_code("member", &request.member)?;
        let listing = Listing::new(
            "ListProjects",
            Category::Project,
            request.page_size,
            request.page_token,
            request.consistency.as_ref(),
            |q| {
                q.number(request.pillar as u64).number(request.status as u64).text(&request.member);
            },
        )?;
        let (projects, next_page_token, position) = self
            .list(&metadata, listing, move |_, _, record| {
                let EntityState::Project(p) = &record.state else { return Ok(None) };
                let admitted = pillar.is_none_or(|x| x == p.pillar)
                    && status.is_none_or(|x| x == p.status)
                    && member.as_ref().is_none_or(|m| p.host == *m || p.partners.contains(m));
                Ok(admitted.then(|| views_convert::project(&record, &[])).flatten())
            })
            .await?;
        Ok(Response::new(pb::ListProjectsResponse { projects, next_page_token, position: position.0 }))
    }

    #[tracing::instrument(skip_all, fields(rule_id = %request.get_ref().rule_id))]
    async fn get_export_rule(
        &self,
        request: Request<pb::GetExportRuleRequest>,
    ) -> Result<Response<pb::GetExportRuleResponse>> {
        let (metadata, _, request) = request.into_parts();
        let id = RuleId::parse("rule_id", &request.rule_id).map_err(status::invalid_argument)?;
        let effective_on = optional_date("effective_on", &request.effective_on)?;
        let stream = StreamName::export_rule(&id);
        self.get(
            &metadata,
            request.consistency.as_ref(),
            stream,
            format!("export rule {id}"),
            move |at, record, timeline| {
                let terms = match effective_on {
                    None => timeline.last(),
                    Some(date) => Some(projection::in_force_on(&timeline, date).ok_or_else(|| {
                        not_found(format!("no change of export rule {id} is in force on {date}"), at)
                    })?),
                };
                let Some(EntityState::ExportRule(terms)) = terms.map(|v| &v.record.state) else {
                    return Err(Status::internal(format!("export rule {id} has no timeline")));
                };
                Ok(pb::GetExportRuleResponse {
                    rule: views_convert::export_rule(record, terms, &timeline),
                    position: at.position.0,
                })
            },
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_export_rules(
        &self,
        request: Request<pb::ListExportRulesRequest>,
    ) -> Result<Response<pb::ListExportRulesResponse>> {
        let (metadata, _, request) = request.into_parts();
        let effective_on = optional_date("effective_on", &request.effective_on)?;
        let origin = optional_jurisdiction("origin", &request.origin)?;
        let destination = optional_jurisdiction("destination", &request.destination)?;
        let treatment = enum_filter("treatment", request.treatment, convert::treatment)?;
        let item = request.item.clone();
        let listing = Listing::new(
            "ListExportRules",
            Category::ExportRule,
            request.page_size,
            request.page_token,
            request.consistency.as_ref(),
            |q| {
                q.text(&request.effective_on)
                    .text(&request.item)
                    .text(&request.origin)
                    .text(&request.destination)
                    .number(request.treatment as u64);
            },
        )?;
        let (rules, next_page_token, position) = self
            .list(&metadata, listing, move |ledger, at, record| {
                let EntityState::ExportRule(current) = &record.state else { return Ok(None) };
                let terms = match effective_on {
                    None => Some(current.clone()),
                    Some(date) => terms_on(ledger, at, &record, date)?,
                };
                let Some(terms) = terms else { return Ok(None) };
                let admitted = (item.is_empty() || terms.item == item)
                    && origin.as_ref().is_none_or(|o| terms.origin == *o)
                    && destination.as_ref().is_none_or(|d| terms.destination == *d)
                    && treatment.is_none_or(|t| terms.treatment == t);
                Ok(admitted.then(|| views_convert::export_rule(&record, &terms, &[])).flatten())
            })
            .await?;
        Ok(Response::new(pb::ListExportRulesResponse { rules, next_page_token, position: position.0 }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_commitments(
        &self,
        request: Request<pb::ListCommitmentsRequest>,
    ) -> Result<Response<pb::ListCommitmentsResponse>> {
        let (metadata, _, request) = request.into_parts();
        let wanted = match pb::CommitmentStatus::try_from(request.status) {
            Ok(pb::CommitmentStatus::Unspecified) => None,
            Ok(status) => Some(status),
            Err(_) => {
                return Err(invalid("status", format!("must be a known commitment status, got {}", request.status)));
            }
        };
        let member = optional_code("member", &request.member)?;
        let pillar = enum_filter("pillar", request.pillar, convert::pillar)?;
        let project = match request.project_id.as_str() {
            "" => None,
            raw => Some(ProjectId::parse("project_id", raw).map_err(status::invalid_argument)?),
        };
        let on = optional_date("on", &request.on)?.unwrap_or_else(today);
        let listing = Listing::new(
            "ListCommitments",
            Category::Commitment,
            request.page_size,
            request.page_token,
            request.consistency.as_ref(),
            |q| {
                q.number(request.status as u64)
                    .text(&request.member)
                    .number(request.pillar as u64)
                    .text(&request.project_id)
                    .text(&convert::format_date(&on));
            },
        )?;
        let (commitments, next_page_token, position) = self
            .list(&metadata, listing, move |_, _, record| {
                let EntityState::Commitment(c) = &record.state else { return Ok(None) };
                let status_matches = match wanted {
                    None => true,
                    Some(pb::CommitmentStatus::Overdue) => c.status == CommitmentStatus::Open && c.due_on < on,
                    Some(status) => views_convert::commitment_status_pb(c.status) == status as i32,
                };
                let admitted = status_matches
                    && member.as_ref().is_none_or(|m| c.member == *m)
                    && pillar.is_none_or(|p| c.pillar == p)
                    && project.is_none_or(|p| c.project_id == Some(p));
                Ok(admitted.then(|| views_convert::commitment(&record, on)).flatten())
            })
            .await?;
        Ok(Response::new(pb::ListCommitmentsResponse { commitments, next_page_token, position: position.0 }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_summary(&self, request: Request<pb::GetSummaryRequest>) -> Result<Response<pb::GetSummaryResponse>> {
        let wait = wait_budget(request.metadata());
        let request = request.into_inner();
        let consistency = Consistency::parse(request.consistency.as_ref())?;
        let on = optional_date("on", &request.on)?.unwrap_or_else(today);
        let at = self.views_at(&consistency, None, wait).await?;
        self.blocking(move |ledger| {
            let summary = ledger.views_summary(&at).map_err(status::from_ledger)?;
            Ok(Response::new(views_convert::summary(&summary, on, at.position.0)))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_summits(
        &self,
        request: Request<pb::ListSummitsRequest>,
    ) -> Result<Response<pb::ListSummitsResponse>> {
        let (metadata, _, request) = request.into_parts();
        let listing = Listing::new(
            "ListSummits",
            Category::Summit,
            request.page_size,
            request.page_token,
            request.consistency.as_ref(),
            |_| {},
        )?;
        let (summits, next_page_token, position) =
            self.list(&metadata, listing, |_, _, record| Ok(views_convert::summit(&record))).await?;
        Ok(Response::new(pb::ListSummitsResponse { summits, next_page_token, position: position.0 }))
    }
}

// ---------------------------------------------------------------------------------------------
// ProjectionService

pub struct ProjectionService {
    ledger: Arc<Ledger>,
}

impl ProjectionService {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }
}

fn progress_pb(progress: &RebuildProgress) -> pb::RebuildProgress {
    let seconds = progress.elapsed.as_secs_f64();
    pb::RebuildProgress {
        events_done: progress.done,
        events_total: progress.total,
        events_per_second: if seconds > 0.0 { progress.done as f64 / seconds } else { 0.0 },
        seconds,
    }
}

fn result_pb(outcome: &RebuildOutcome) -> pb::RebuildResult {
    let seconds = outcome.elapsed.as_secs_f64();
    pb::RebuildResult {
        position: outcome.position.0,
        view_digest: hex::encode(outcome.digest),
        records: outcome.records,
        events: outcome.events,
        seconds,
        events_per_second: if seconds > 0.0 { outcome.events as f64 / seconds } else { 0.0 },
        started_time: Some(convert::to_timestamp(&outcome.started_at)),
        generation: outcome.generation,
    }
}

type RebuildStream = Pin<Box<dyn Stream<Item = Result<pb::RebuildProjectionsResponse>> + Send>>;

#[tonic::async_trait]
impl pb::projection_service_server::ProjectionService for ProjectionService {
    async fn get_projection_status(
        &self,
        _request: Request<pb::GetProjectionStatusRequest>,
    ) -> Result<Response<pb::ProjectionStatus>> {
        let ledger = self.ledger.clone();
        let status = tokio::task::spawn_blocking(move || ledger.projection_status())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status::from_ledger)?;
        Ok(Response::new(pb::ProjectionStatus {
            position: status.position.0,
            log_position: status.log_position.0,
            lag: status.log_position.0.saturating_sub(status.position.0),
            view_digest: hex::encode(status.digest),
            records: status.records,
            generation: status.generation,
            rebuilding: status.rebuilding.is_some(),
            rebuild_progress: status.rebuilding.map(|(_, progress)| progress_pb(&progress)),
            last_rebuild: status.last_rebuild.as_ref().map(result_pb),
        }))
    }

    type RebuildProjectionsStream = RebuildStream;

    /// The rebuild runs to its end even if the caller goes away: it is an operator's action,
    /// and a half-built generation is never made live.
    #[tracing::instrument(skip_all)]
    async fn rebuild_projections(
        &self,
        _request: Request<pb::RebuildProjectionsRequest>,
    ) -> Result<Response<Self::RebuildProjectionsStream>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            use pb::rebuild_projections_response::Update;
            let started = tx.blocking_send(Ok(None));
            let outcome = ledger.rebuild_views(|progress| {
                let update = Update::Progress(progress_pb(&progress));
                let _ = tx.try_send(Ok(Some(pb::RebuildProjectionsResponse { update: Some(update) })));
            });
            let last =
                outcome.map(|o| Some(pb::RebuildProjectionsResponse { update: Some(Update::Result(result_pb(&o))) }));
            if started.is_ok() {
                let _ = tx.blocking_send(last.map_err(status::from_ledger));
            }
        });
        // The first message after the start marker tells whether the rebuild began: a refusal
        // (one is running) is the call's answer, not a stream item.
        let _ = rx.recv().await;
        let first = rx.recv().await.ok_or_else(|| Status::internal("the rebuild ended without a result"))?;
        let first = first?;
        let rest = ReceiverStream::new(rx);
        let stream = futures::stream::once(async move { Ok(first) })
            .chain(rest)
            .filter_map(|item: Result<Option<pb::RebuildProjectionsResponse>>| async move { item.transpose() });
        Ok(Response::new(Box::pin(stream)))
    }
}
