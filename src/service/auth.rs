//! Who is calling, and may they: the tower layer in front of every service.
//!
//! For each request it finds the rule of the method called ([`RPC_ACCESS`], one table, deny by
//! default), authenticates the caller (a bearer token, else the client certificate of mutual
//! TLS) against the ledger's access table, checks the caller's roles against the rule and the
//! caller's request rate, and hands the handler a [`Caller`] (and the [`Credential`] it
//! presented) in the request's extensions.
//! While no principal exists, every call passes as [`Caller::Anonymous`] (the ledger is open;
//! `serve` keeps it on loopback unless told otherwise).
//!
//! What a principal may *record* is decided per event by the writer
//! (`domain::access::authorize`); this layer only says who may call which method.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tonic::body::Body;

use super::status;
use crate::domain::{Credential, CredentialKind, PrincipalName, Role};
use crate::ledger::AccessTable;
use crate::ledger::{Caller, Ledger};

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, unauthenticated: health checks (load balancers and orchestrators ask them).
    Public,
    /// Any authenticated principal, whatever it holds (reflection: the schema is public).
    AnyPrincipal,
    /// A principal holding one of these roles (for any scope).
    Roles(&'static [Role]),
}

/// Every role: reading the log and the views is open to every principal of the initiative.
const EVERYONE: &[Role] = &crate::domain::access::ROLES;
/// The roles that record events; the writer then checks each event against the grants.
const RECORDERS: &[Role] = &[Role::Admin, Role::Secretariat, Role::Delegate, Role::Authority];
const AUDITORS: &[Role] = &[Role::Admin, Role::Auditor];
/// Checkpoints are read by auditors and issued on demand by operators.
const CHECKPOINTS: &[Role] = &[Role::Admin, Role::Auditor, Role::Operator];
const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];
const ADMINS: &[Role] = &[Role::Admin];

/// Which role may call which method: the one table. A method not listed is refused to every
/// principal (a test walks the services' descriptors so that a new method without an entry
/// fails).
pub const RPC_ACCESS: &[(&str, Access)] = &[
    ("/pax.ledger.v1.LedgerService/Append", Access::Roles(RECORDERS)),
    ("/pax.ledger.v1.LedgerService/ReadStream", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.LedgerService/ReadAll", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.LedgerService/GetEvent", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.LedgerService/Subscribe", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/GetMember", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/ListMembers", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/GetProject", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/ListProjects", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/GetExportRule", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/ListExportRules", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/ListCommitments", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/GetSummary", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.QueryService/ListSummits", Access::Roles(EVERYONE)),
    ("/pax.ledger.v1.ProjectionService/GetProjectionStatus", Access::Roles(OPERATORS)),
    ("/pax.ledger.v1.ProjectionService/RebuildProjections", Access::Roles(OPERATORS)),
    ("/pax.ledger.v1.AuditService/GetCheckpoint", Access::Roles(CHECKPOINTS)),
    ("/pax.ledger.v1.AuditService/GetInclusionProof", Access::Roles(AUDITORS)),
    ("/pax.ledger.v1.AuditService/GetConsistencyProof", Access::Roles(AUDITORS)),
    ("/pax.ledger.v1.AuditService/GetViewProof", Access::Roles(AUDITORS)),
    ("/pax.ledger.v1.AuditService/VerifyLedger", Access::Roles(AUDITORS)),
    // Backups (operators) and bundles (auditors) copy the whole log with its checkpoints.
    ("/pax.ledger.v1.AuditService/ExportLog", Access::Roles(CHECKPOINTS)),
    ("/pax.ledger.v1.AccessService/Grant", Access::Roles(ADMINS)),
    ("/pax.ledger.v1.AccessService/Revoke", Access::Roles(ADMINS)),
    ("/pax.ledger.v1.AccessService/IssueToken", Access::Roles(ADMINS)),
    ("/pax.ledger.v1.AccessService/BindCertificate", Access::Roles(ADMINS)),
    ("/pax.ledger.v1.AccessService/RegisterSigningKey", Access::Roles(ADMINS)),
    ("/pax.ledger.v1.AccessService/RevokeCredential", Access::Roles(ADMINS)),
    ("/pax.ledger.v1.AccessService/ListPrincipals", Access::Roles(AUDITORS)),
    ("/pax.ledger.v1.AccessService/WhoAmI", Access::AnyPrincipal),
    ("/grpc.health.v1.Health/Check", Access::Public),
    ("/grpc.health.v1.Health/Watch", Access::Public),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Access::AnyPrincipal),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Access::AnyPrincipal),
];

/// The rule of the method at `path` (`/package.Service/Method`), if the table has one.
pub fn access_of(path: &str) -> Option<Access> {
    RPC_ACCESS.iter().find(|(p, _)| *p == path).map(|(_, access)| *access)
}

/// Requests a principal may make per second, sustained (0: no limit). Far above what one
/// client needs (a recording office sends a few requests a second; a reader pages through
/// history at most a few hundred), and below what the server answers to all clients together
/// on a small machine (≈ 34k cheap reads/s on 2 cores): a principal above it is a runaway loop
/// or a flood, and it should not starve the others.
pub const PRINCIPAL_REQUESTS_PER_SECOND: u32 = 5_000;
/// Requests a principal may make at once above its rate: one second's worth.
pub const PRINCIPAL_BURST_SECONDS: u32 = 1;
/// Subscriptions one principal may hold open at once: a client follows a few streams; hundreds
/// are a leak, each holding a buffer of events and a task.
pub const PRINCIPAL_SUBSCRIPTIONS_MAX: usize = 64;

/// The per-principal limits of [`AuthLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessLimits {
    /// Sustained requests per second per principal; 0: no limit.
    pub requests_per_second: u32,
    /// Subscriptions per principal held open at once; 0: no limit.
    pub subscriptions_max: usize,
}

impl Default for AccessLimits {
    fn default() -> Self {
        Self { requests_per_second: PRINCIPAL_REQUESTS_PER_SECOND, subscriptions_max: PRINCIPAL_SUBSCRIPTIONS_MAX }
    }
}

/// A token bucket per principal: `rate` tokens a second, at most `rate × burst seconds` saved.
#[derive(Debug)]
struct Buckets {
    rate: f64,
    capacity: f64,
    buckets: Mutex<HashMap<PrincipalName, (f64, Instant)>>,
}

impl Buckets {
    fn new(requests_per_second: u32) -> Self {
        let rate = f64::from(requests_per_second);
        Self { rate, capacity: rate * f64::from(PRINCIPAL_BURST_SECONDS), buckets: Mutex::default() }
    }

    /// `Ok` and one token taken, or how long until the next token.
    fn take(&self, principal: &PrincipalName, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate buckets lock");
        let (tokens, at) = buckets.entry(principal.clone()).or_insert((self.capacity, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(self.capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// Open subscriptions per principal; a [`SubscriptionSlot`] gives its place back when dropped.
#[derive(Debug, Default)]
pub struct SubscriptionCounts {
    max: usize,
    open: Mutex<HashMap<PrincipalName, usize>>,
}

impl SubscriptionCounts {
    pub fn new(max: usize) -> Self {
        Self { max, open: Mutex::default() }
    }

    /// A place for one more subscription of `caller`, or RESOURCE_EXHAUSTED. Anonymous callers
    /// (an open ledger) are not counted.
    pub fn acquire(self: &Arc<Self>, caller: Option<&Caller>) -> Result<Option<SubscriptionSlot>, Status> {
        let Some(Caller::Principal(name)) = caller else { return Ok(None) };
        let mut open = self.open.lock().expect("subscription counts lock");
        let count = open.entry(name.clone()).or_default();
        if self.max != 0 && *count >= self.max {
            return Err(status::too_large(format!(
                "principal {name} already holds {} subscriptions, the most one principal may hold open; close one first",
                self.max
            )));
        }
        *count += 1;
        Ok(Some(SubscriptionSlot { counts: self.clone(), principal: name.clone() }))
    }
}

/// One open subscription of a principal (see [`SubscriptionCounts::acquire`]).
#[derive(Debug)]
pub struct SubscriptionSlot {
    counts: Arc<SubscriptionCounts>,
    principal: PrincipalName,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("subscription counts lock");
        if let Some(count) = open.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

/// Authenticates and authorizes every request (see the module documentation).
#[derive(Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

struct Shared {
    ledger: Arc<Ledger>,
    buckets: Buckets,
}

impl AuthLayer {
    pub fn new(ledger: Arc<Ledger>, limits: AccessLimits) -> Self {
        Self { shared: Arc::new(Shared { ledger, buckets: Buckets::new(limits.requests_per_second) }) }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, shared: self.shared.clone() }
    }
}

/// The service of [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> tower_service::Service<http::Request<Body>> for Auth<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self.shared.admit(&request) {
            Ok((caller, credential)) => {
                request.extensions_mut().insert(caller);
                if let Some(credential) = credential {
                    request.extensions_mut().insert(credential);
                }
                Either::Right(self.inner.call(request))
            }
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

impl Shared {
    /// The caller of `request`, if it may call the method it names.
    fn admit(&self, request: &http::Request<Body>) -> Result<(Caller, Option<Credential>), Status> {
        let path = request.uri().path();
        if access_of(path) == Some(Access::Public) {
            return Ok((Caller::Anonymous, None));
        }
        let table = self.ledger.access();
        if !table.is_closed() {
            return Ok((Caller::Anonymous, None));
        }
        let credential = presented_credential(request)?;
        let name = admit_call(&table, &credential, path)?;
        drop(table);
        if let Err(wait) = self.buckets.take(&name, Instant::now()) {
            return Err(status::rate_limited(
                format!(
                    "principal {name} is over its rate of {} requests a second; retry in {} ms",
                    self.buckets.rate,
                    wait.as_millis().max(1)
                ),
                wait,
            ));
        }
        tracing::Span::current().record("principal", name.as_str());
        Ok((Caller::Principal(name), Some(credential)))
    }
}

/// The principal `credential` authenticates, if it may call the method at `path` as the access
/// table says now: UNAUTHENTICATED for a credential that authenticates nobody (unknown or
/// revoked), PERMISSION_DENIED for a principal whose grants do not cover the method. What the
/// layer checks on every call, and a subscription again before each message it sends.
pub fn admit_call(table: &AccessTable, credential: &Credential, path: &str) -> Result<PrincipalName, Status> {
    let Some(entry) = table.authenticate(credential) else {
        return Err(status::unauthenticated(match credential.kind {
            CredentialKind::Token => "the bearer token is not valid: unknown, or revoked".to_owned(),
            CredentialKind::Certificate => format!(
                "the client certificate (SHA-256 fingerprint {}) is bound to no principal",
                credential.digest_hex()
            ),
            CredentialKind::SigningKey => "a signing key authenticates nobody".to_owned(),
        }));
    };
    let name = entry.state.name.clone();
    let access = access_of(path);
    let allowed = match access {
        Some(Access::Public | Access::AnyPrincipal) => true,
        Some(Access::Roles(roles)) => entry.state.grants.iter().any(|g| roles.contains(&g.role())),
        None => false,
    };
    if !allowed {
        let needs = match access {
            Some(Access::Roles(roles)) => {
                format!("needs one of the roles {}", roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(", "))
            }
            _ => "no rule lets anyone call it (denied by default)".to_owned(),
        };
        return Err(status::permission_denied(
            "NOT_ALLOWED",
            format!(
                "principal {name} (holding {}) may not call {}: {needs}",
                crate::domain::access::held_text(&entry.state.grants),
                domain_quote(path)
            ),
            name.as_str(),
        ));
    }
    Ok(name)
}

fn domain_quote(path: &str) -> String {
    crate::domain::quote(path).to_string()
}

/// The credential a request presents: its bearer token, else its client certificate.
fn presented_credential(request: &http::Request<Body>) -> Result<Credential, Status> {
    if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| status::unauthenticated("the authorization header must be `Bearer <token>`".to_owned()))?;
        return Ok(Credential::of_token(token));
    }
    if let Some(digest) = super::peer::client_certificate_digest(request.extensions()) {
        return Ok(Credential::of_certificate(digest));
    }
    Err(status::unauthenticated(
        "this ledger requires authentication: a bearer token (authorization: Bearer <token>) or a client certificate bound to a principal"
            .to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_each_method_once() {
        let mut paths: Vec<&str> = RPC_ACCESS.iter().map(|(p, _)| *p).collect();
        paths.sort_unstable();
        let before = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), before, "a method listed twice");
        assert_eq!(access_of("/pax.ledger.v1.LedgerService/Nope"), None);
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_when_to_retry() {
        let buckets = Buckets::new(10);
        let name = PrincipalName::parse("n", "flood").unwrap();
        let start = Instant::now();
        for _ in 0..10 {
            buckets.take(&name, start).expect("within the burst");
        }
        let wait = buckets.take(&name, start).expect_err("past the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        buckets.take(&name, start + Duration::from_millis(100)).expect("a token came back");
        assert!(Buckets::new(0).take(&name, start).is_ok(), "0 is no limit");
    }

    #[test]
    fn subscription_slots_are_counted_per_principal_and_given_back() {
        let counts = Arc::new(SubscriptionCounts::new(2));
        let caller = Caller::Principal(PrincipalName::parse("n", "reader").unwrap());
        let first = counts.acquire(Some(&caller)).unwrap();
        let _second = counts.acquire(Some(&caller)).unwrap();
        let refused = counts.acquire(Some(&caller)).expect_err("a third is over the limit");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        drop(first);
        counts.acquire(Some(&caller)).expect("a place was given back");
        assert!(counts.acquire(Some(&Caller::Anonymous)).unwrap().is_none(), "anonymous is not counted");
    }
}
