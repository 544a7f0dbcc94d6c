//! The CPU cost per request of the authentication layer (`service::auth::AuthLayer`), without
//! the network: the same `Append` request through the layer, in front of a service that
//! answers at once,
//! - `open`: no principal exists (every call passes as anonymous);
//! - `token`: a bearer token of an admin (SHA-256 of the token, the access table's read lock
//!   and lookup, the role check, the rate bucket's mutex — the limit set high enough never to
//!   refuse, so that the bucket is still taken as in production);
//! - `bad_token`: an unknown token, refused UNAUTHENTICATED (what a flood of guesses costs);
//!
//! and `cert_digest`: the SHA-256 of a 450-byte DER certificate, what a mutual-TLS call hashes
//! in place of the token (the client certificate's fingerprint, per request).
//!
//! Run: `cargo bench --bench auth_layer`. `benches/auth.sh` measures the same end to end.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures::future::{Ready, ready};
use pax_ledger::domain::access::{TOKEN_RANDOM_BYTES, token_of};
use pax_ledger::domain::{Credential, EventData, EventId, Grant, Metadata, PrincipalName, ProposedEvent};
use pax_ledger::ledger::{AppendRequest, Caller, Ledger, LedgerConfig};
use pax_ledger::service::{AccessLimits, AuthLayer};
use sha2::{Digest, Sha256};
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

/// Answers every request at once, with an empty body.
#[derive(Clone)]
struct Answer;

impl Service<http::Request<Body>> for Answer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        ready(Ok(http::Response::new(Body::empty())))
    }
}

/// A ledger in `dir`, with an admin holding a token (returned) when `principal`.
fn ledger(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, principal: bool) -> (Arc<Ledger>, String) {
    let ledger = Ledger::open(dir, LedgerConfig::default()).expect("open ledger");
    let token = token_of(&[7u8; TOKEN_RANDOM_BYTES]);
    if principal {
        let name = PrincipalName::parse("name", "admin").unwrap();
        let events = [
            EventData::AccessGranted { principal: name.clone(), grants: vec![Grant::Admin], reason: "bench".into() },
            EventData::CredentialIssued { principal: name, credential: Credential::of_token(&token) },
        ]
        .into_iter()
        .map(|data| ProposedEvent {
            event_id: EventId::generate(),
            data,
            effective_at: None,
            metadata: Metadata::default(),
        })
        .collect();
        runtime
            .block_on(ledger.append_as(Caller::Bootstrap, AppendRequest { events, expectations: Vec::new() }))
            .expect("bootstrap an admin");
    }
    (ledger, token)
}

fn request(token: Option<&str>) -> http::Request<Body> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri("http://localhost/pax.ledger.v1.LedgerService/Append")
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    if let Some(token) = token {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn auth_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let limits = AccessLimits { requests_per_second: 10_000_000, ..AccessLimits::default() };
    let mut group = c.benchmark_group("auth_layer");
    for (name, principal, token) in
        [("open", false, None), ("token", true, Some(None)), ("bad_token", true, Some(Some("pax_nope")))]
    {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, good) = ledger(&runtime, dir.path(), principal);
        let sent = token.map(|t: Option<&str>| t.map_or(good.clone(), str::to_owned));
        let mut service = AuthLayer::new(ledger.clone(), limits).layer(Answer);
        group.bench_function(name, |b| {
            b.iter_batched(
                || request(sent.as_deref()),
                |request| black_box(service.call(request)),
                BatchSize::SmallInput,
            )
        });
        ledger.shutdown();
    }
    let der = vec![0x30u8; 450];
    group.bench_function("cert_digest", |b| b.iter(|| black_box(Sha256::digest(black_box(&der)))));
    group.finish();
}

criterion_group!(benches, auth_layer);
criterion_main!(benches);
