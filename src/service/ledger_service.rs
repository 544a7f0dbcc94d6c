//! `pax.ledger.v1.LedgerService`: convert → call the ledger → convert.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::auth::{AccessLimits, SubscriptionCounts};
use super::{convert, page_token, status};
use crate::domain::{EVENT_TYPE_NAMES, EventId, FieldError, Position, Revision, StreamName, quote};
use crate::ledger::{self, APPEND_EVENTS_MAX, EventFilter, Ledger, LedgerError, SubscriptionItem};
use crate::proto::v1 as pb;

/// Default page size of reads when the request leaves it at 0.
pub const READ_PAGE_DEFAULT: u32 = 100;
/// Largest page size of reads.
pub const READ_PAGE_MAX: u32 = 1000;
/// The method whose access a subscription checks again before each message.
const SUBSCRIBE_PATH: &str = "/pax.ledger.v1.LedgerService/Subscribe";
/// Most filter entries (prefixes or types) in one read or subscription.
pub const FILTERS_MAX: usize = 64;

pub struct LedgerService {
    ledger: Arc<Ledger>,
    subscriptions: Arc<SubscriptionCounts>,
}

impl LedgerService {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self::with_limits(ledger, AccessLimits::default())
    }

    /// The service, holding each principal to `limits.subscriptions_max` open subscriptions.
    pub fn with_limits(ledger: Arc<Ledger>, limits: AccessLimits) -> Self {
        Self { ledger, subscriptions: Arc::new(SubscriptionCounts::new(limits.subscriptions_max)) }
    }
}

fn page_size(field: &str, raw: u32) -> Result<usize, Status> {
    match raw {
        0 => Ok(READ_PAGE_DEFAULT as usize),
        n if n <= READ_PAGE_MAX => Ok(n as usize),
        n => Err(status::invalid_argument(FieldError::new(field, format!("must be at most {READ_PAGE_MAX}, got {n}")))),
    }
}

fn direction(field: &str, raw: i32) -> Result<bool, Status> {
    match pb::ReadDirection::try_from(raw) {
        Ok(pb::ReadDirection::Forward) => Ok(true),
        Ok(pb::ReadDirection::Backward) => Ok(false),
        Err(_) => {
            Err(status::invalid_argument(FieldError::new(field, format!("must be a known read direction, got {raw}"))))
        }
    }
}

/// Parses and checks a filter: prefixes are non-empty, types are known event types.
fn filter(prefixes: &[String], types: &[String], prefix_field: &str, type_field: &str) -> Result<EventFilter, Status> {
    for (field, list) in [(prefix_field, prefixes), (type_field, types)] {
        if list.len() > FILTERS_MAX {
            return Err(status::invalid_argument(FieldError::new(field, format!("at most {FILTERS_MAX} entries"))));
        }
    }
    for (i, p) in prefixes.iter().enumerate() {
        if p.is_empty() || p.len() > crate::domain::STREAM_NAME_LEN_MAX {
            return Err(status::invalid_argument(FieldError::new(
                format!("{prefix_field}[{i}]"),
                "must be a non-empty stream-name prefix",
            )));
        }
    }
    for (i, t) in types.iter().enumerate() {
        if !EVENT_TYPE_NAMES.contains(&t.as_str()) {
            return Err(status::invalid_argument(FieldError::new(
                format!("{type_field}[{i}]"),
                format!("must be one of {}, got {}", EVENT_TYPE_NAMES.join(", "), quote(t)),
            )));
        }
    }
    Ok(EventFilter { stream_prefixes: prefixes.to_vec(), event_types: types.to_vec() })
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::ledger_service_server::LedgerService for LedgerService {
    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Response<pb::AppendResponse>, Status> {
        // Its size, as received, was checked before it was decoded (`RequestSizeLayer`); its
        // caller was authenticated (`AuthLayer`).
        let caller = super::caller_of(&request);
        let request = request.into_inner();
        if request.events.is_empty() {
            return Err(status::invalid_argument(FieldError::new("events", "must hold at least one event")));
        }
        if request.events.len() > APPEND_EVENTS_MAX {
            return Err(status::too_large(format!(
                "events: {} events in one request, more than the {APPEND_EVENTS_MAX} allowed",
                request.events.len()
            )));
        }
        let events = request
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| convert::proposed_event(&format!("events[{i}]"), e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(status::invalid_argument)?;
        // The request's span (opened by `metrics::RequestLayer`) says what it appends.
        let span = tracing::Span::current();
        span.record("events", events.len());
        if let Some(first) = events.first() {
            let stream = first.data.stream();
            let one_stream = events.iter().all(|e| e.data.stream_key() == first.data.stream_key());
            span.record("stream", if one_stream { stream.as_str() } else { "(several)" });
        }
        if request.expectations.len() > APPEND_EVENTS_MAX {
            return Err(status::too_large(format!(
                "expectations: {} in one request, more than the {APPEND_EVENTS_MAX} allowed",
                request.expectations.len()
            )));
        }
        let mut expectations = Vec::with_capacity(request.expectations.len());
        let mut named = std::collections::HashSet::with_capacity(request.expectations.len());
        for (i, raw) in request.expectations.iter().enumerate() {
            let (stream, expected) =
                convert::expectation(&format!("expectations[{i}]"), raw).map_err(status::invalid_argument)?;
            if !named.insert(stream.clone()) {
                return Err(status::invalid_argument(FieldError::new(
                    format!("expectations[{i}].stream"),
                    format!("stream {stream} has more than one expectation"),
                )));
            }
            expectations.push((stream, expected));
        }
        let outcome = self
            .ledger
            .append_as(caller, ledger::AppendRequest { events, expectations })
            .await
            .map_err(status::from_ledger)?;
        Ok(Response::new(pb::AppendResponse {
            events: outcome.events.iter().map(convert::appended_pb).collect(),
            record_time: Some(convert::to_timestamp(&outcome.recorded_at)),
            already_committed: outcome.already_committed,
        }))
    }

    #[tracing::instrument(skip_all, fields(stream = %request.get_ref().stream))]
    async fn read_stream(
        &self,
        request: Request<pb::ReadStreamRequest>,
    ) -> Result<Response<pb::ReadStreamResponse>, Status> {
        let request = request.into_inner();
        let stream = StreamName::parse("stream", &request.stream).map_err(status::invalid_argument)?;
        let forward = direction("direction", request.direction)?;
        let limit = page_size("limit", request.limit)?;
        let page = self
            .ledger
            .read_stream(&stream, request.from_revision.map(Revision), forward, limit)
            .map_err(status::from_ledger)?;
        Ok(Response::new(pb::ReadStreamResponse {
            events: page.events.iter().map(convert::recorded_event_pb).collect(),
            stream_revision: page.stream_revision.0,
            next_revision: page.next_revision.map(|r| r.0),
        }))
    }

    #[tracing::instrument(skip_all, fields(from = request.get_ref().from_position))]
    async fn read_all(&self, request: Request<pb::ReadAllRequest>) -> Result<Response<pb::ReadAllResponse>, Status> {
        let request = request.into_inner();
        let forward = direction("direction", request.direction)?;
        let limit = page_size("page_size", request.page_size)?;
        let filter = filter(&request.stream_prefixes, &request.event_types, "stream_prefixes", "event_types")?;
        let from = if request.page_token.is_empty() {
            match (forward, request.from_position) {
                (false, 0) => Position(u64::MAX),
                (_, p) => Position(p),
            }
        } else {
            page_token::decode(&request.page_token, forward, &filter).map_err(status::invalid_argument)?
        };
        let page = self.ledger.read_all(from, forward, limit, &filter).map_err(status::from_ledger)?;
        Ok(Response::new(pb::ReadAllResponse {
            events: page.events.iter().map(convert::recorded_event_pb).collect(),
            next_page_token: page.next_position.map(|p| page_token::encode(p, forward, &filter)).unwrap_or_default(),
            head_position: page.head_position.0,
        }))
    }

    #[tracing::instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn get_event(&self, request: Request<pb::GetEventRequest>) -> Result<Response<pb::RecordedEvent>, Status> {
        let id = EventId::parse("event_id", &request.get_ref().event_id).map_err(status::invalid_argument)?;
        let event = self.ledger.get_event(&id).map_err(status::from_ledger)?;
        Ok(Response::new(convert::recorded_event_pb(&event)))
    }

    type SubscribeStream = SubscribeStream;

    #[tracing::instrument(skip_all, fields(from = request.get_ref().from_position))]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let slot = self.subscriptions.acquire(request.extensions().get::<ledger::Caller>())?;
        // Access is checked again before each message: a credential revoked, or a principal
        // whose grants no longer cover reading, gets nothing more (and the stream ends).
        let credential = request.extensions().get::<crate::domain::Credential>().copied();
        let ledger = self.ledger.clone();
        let still_allowed = move || match &credential {
            Some(credential) => super::auth::admit_call(&ledger.access(), credential, SUBSCRIBE_PATH).map(drop),
            None => Ok(()),
        };
        let request = request.into_inner();
        let filter = filter(&request.stream_prefixes, &request.event_types, "stream_prefixes", "event_types")?;
        let items = self.ledger.subscribe(Position(request.from_position), filter);
        // The slot goes with the stream: dropped (given back) when the stream ends or the
        // client goes away.
        let items = (items, slot);
        // The stream ends with the ledger's error, or UNAVAILABLE if the ledger gave the
        // subscription up at shutdown: never with OK, which would say the log has ended.
        let stream = futures::stream::unfold(Some(items), move |items| {
            let still_allowed = still_allowed.clone();
            async move {
                let (mut items, slot) = items?;
                let received = items.recv().await;
                if let Err(status) = still_allowed() {
                    return Some((Err(status), None));
                }
                let message = match received {
                    Some(Ok(SubscriptionItem::Event(event))) => {
                        pb::subscribe_response::Message::Event(convert::recorded_event_pb(&event))
                    }
                    Some(Ok(SubscriptionItem::CaughtUp(position))) => {
                        pb::subscribe_response::Message::CaughtUp(pb::CaughtUp { position: position.0 })
                    }
                    Some(Err(error)) => return Some((Err(status::from_ledger(error)), None)),
                    None => return Some((Err(status::from_ledger(LedgerError::ShuttingDown)), None)),
                };
                Some((Ok(pb::SubscribeResponse { message: Some(message) }), Some((items, slot))))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
