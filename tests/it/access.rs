//! Identity and access end to end, against a real server on 127.0.0.1:0: which role may call
//! which RPC (every method of the descriptors × every role × no, a wrong, a revoked and a valid
//! credential, as `RPC_ACCESS` says), what a scoped grant lets a principal record, the actor
//! stamped on what a principal records and the access events in the history and the exported
//! bundle, client certificates bound to principals under mutual TLS, the per-principal limits,
//! and the first admin bootstrapped offline with the real binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use pax_ledger::domain::access::{ROLES, TOKEN_RANDOM_BYTES, token_of};
use pax_ledger::domain::{Credential, Grant, PrincipalName, Role};
use pax_ledger::ledger::{Ledger, LedgerConfig};
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::access_service_client::AccessServiceClient;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pax_ledger::server::Options;
use pax_ledger::service::auth::{Access, RPC_ACCESS};
use pax_ledger::service::{AccessLimits, convert};
use prost::Message;
use serde_json::Value;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::crash::ServerProcess;
use crate::support::*;
use crate::tls::{Pki, tls_channel};

// ------------------------------------------------------------------------------------------
// A ledger with principals

/// Creates the first admin, `admin`, in the stopped ledger at `dir` as `principal bootstrap`
/// does (in process, as the operator at the data directory), and returns its token.
pub(crate) async fn bootstrap(dir: &Path) -> String {
    let path = dir.to_owned();
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&path, LedgerConfig::default()))
        .await
        .unwrap()
        .expect("open the ledger to bootstrap it");
    let outcome = ledger.bootstrap(&PrincipalName::parse("name", "admin").unwrap()).await;
    tokio::task::spawn_blocking(move || ledger.shutdown()).await.unwrap();
    outcome.expect("bootstrap the first admin").0
}

/// A server over a fresh directory whose first admin was bootstrapped before it started.
pub(crate) struct Secured {
    pub(crate) server: TestServer,
    /// The admin's token.
    pub(crate) admin: String,
    dir: tempfile::TempDir,
}

impl Secured {
    pub(crate) async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin = bootstrap(dir.path()).await;
        let server = TestServer::start_with_options(dir.path(), LedgerConfig::default(), options).await;
        Self { server, admin, dir }
    }

    /// The durable head's position.
    pub(crate) fn head(&self) -> u64 {
        self.server.ledger.durable_head().position.0
    }

    /// An `AccessService` client presenting the admin's token.
    pub(crate) async fn admin(&self) -> Admin {
        Admin { access: AccessServiceClient::new(self.server.channel().await), token: self.admin.clone() }
    }

    /// Stops the server; the data directory stays until the returned value is dropped.
    pub(crate) async fn stop(self) -> tempfile::TempDir {
        self.server.stop().await;
        self.dir
    }
}

/// `message` with `authorization: Bearer TOKEN`, if a token is given.
pub(crate) fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("an ASCII header"));
    }
    request
}

pub(crate) fn authed<T>(message: T, token: &str) -> Request<T> {
    with_token(message, Some(token))
}

/// The admin, through `AccessService`.
pub(crate) struct Admin {
    access: AccessServiceClient<Channel>,
    token: String,
}

impl Admin {
    fn on(channel: Channel, token: &str) -> Self {
        Self { access: AccessServiceClient::new(channel), token: token.to_owned() }
    }

    pub(crate) async fn grant(&mut self, principal: &str, grants: &[&str]) {
        let grants = grants.iter().map(|g| convert::grant_pb(&Grant::parse("grant", g).unwrap())).collect();
        let request = pb::GrantRequest { principal: principal.into(), grants, reason: "test".into() };
        self.access.grant(authed(request, &self.token)).await.unwrap_or_else(|s| panic!("grant {principal}: {s:?}"));
    }

    /// A new token of `principal`: (the token, its credential id).
    async fn issue_token(&mut self, principal: &str) -> (String, String) {
        let request = pb::IssueTokenRequest { principal: principal.into() };
        let issued = self
            .access
            .issue_token(authed(request, &self.token))
            .await
            .unwrap_or_else(|s| panic!("issue a token to {principal}: {s:?}"))
            .into_inner();
        (issued.token, issued.credential.expect("the issued credential").id)
    }

    async fn revoke_credential(&mut self, principal: &str, credential: &str) {
        let request = pb::RevokeCredentialRequest {
            principal: principal.into(),
            credential: credential.into(),
            reason: "test".into(),
        };
        self.access
            .revoke_credential(authed(request, &self.token))
            .await
            .unwrap_or_else(|s| panic!("revoke credential {credential} of {principal}: {s:?}"));
    }

    /// A principal holding `grants`, and its token.
    pub(crate) async fn principal(&mut self, name: &str, grants: &[&str]) -> String {
        self.grant(name, grants).await;
        self.issue_token(name).await.0
    }
}

/// `event` with an empty actor: the server records the calling principal's name.
pub(crate) fn without_actor(mut event: pb::ProposedEvent) -> pb::ProposedEvent {
    event.metadata.get_or_insert_default().actor.clear();
    event
}

/// `event` proposed under the actor `actor`.
fn under_actor(mut event: pb::ProposedEvent, actor: &str) -> pb::ProposedEvent {
    event.metadata.get_or_insert_default().actor = actor.into();
    event
}

async fn append_with(
    client: &mut LedgerServiceClient<Channel>,
    token: &str,
    events: Vec<pb::ProposedEvent>,
) -> Result<pb::AppendResponse, Status> {
    client.append(authed(append(events), token)).await.map(tonic::Response::into_inner)
}

/// The whole log, read as the principal of `token`.
pub(crate) async fn log_as(server: &TestServer, token: &str) -> Vec<pb::RecordedEvent> {
    let mut client = server.client().await;
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ReadAllRequest { page_size: 1000, page_token: page_token.clone(), ..Default::default() };
        let page = client.read_all(authed(request, token)).await.expect("read the log").into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// The reason of a status's `ErrorInfo` (panics if it carries none).
fn reason(status: &Status) -> String {
    status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}")).reason
}

// ------------------------------------------------------------------------------------------
// Calling any method: raw bytes

/// A codec of raw message bytes: a request is sent as it is, an answer kept undecoded.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawCodec;

pub(crate) struct RawEncoder;

pub(crate) struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A method as its service's descriptor declares it.
#[derive(Clone, Debug)]
pub(crate) struct Method {
    /// `/package.Service/Method`
    pub(crate) path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// The packages whose services the server serves: its own, health and the two reflections.
const SERVED_PACKAGES: [&str; 4] = ["pax.ledger.v1", "grpc.health.v1", "grpc.reflection.v1", "grpc.reflection.v1alpha"];

/// Every method of every service of [`SERVED_PACKAGES`], by path, from the descriptor sets the
/// server and its libraries are built from.
pub(crate) fn described_methods() -> BTreeMap<String, Method> {
    let sets: [&[u8]; 4] = [
        pax_ledger::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = BTreeMap::new();
    for set in sets {
        let set = prost_types::FileDescriptorSet::decode(set).expect("a file descriptor set");
        for file in set.file.iter().filter(|f| SERVED_PACKAGES.contains(&f.package())) {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    let described = Method {
                        path: path.clone(),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    };
                    methods.insert(path, described);
                }
            }
        }
    }
    methods
}

/// How long a stream may take to say its first word (every stream called here answers at once:
/// a subscription replays the log, health says its status, reflection refuses the empty request).
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first message of a response stream, or the status that ended it.
async fn first_message(mut stream: tonic::Streaming<Bytes>, path: &str) -> Result<(), Status> {
    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, stream.message()).await {
        Ok(message) => message.map(drop),
        Err(_) => panic!("{path}: no first message within {FIRST_MESSAGE_TIMEOUT:?}"),
    }
}

/// Calls `method` with one empty request message (valid protobuf for every request type; one
/// message in the stream of a client-streaming method), presenting `token` if any. `Ok` when
/// the server answered, else the status the call ended with (for a response stream: the
/// status before or instead of its first message).
async fn call_empty(channel: &Channel, method: &Method, token: Option<&str>) -> Result<(), Status> {
    call_raw(channel, method, Bytes::new(), token).await
}

/// [`call_empty`] with `message` as the request's bytes, sent as they are (they need not be
/// valid protobuf).
pub(crate) async fn call_raw(
    channel: &Channel,
    method: &Method,
    message: Bytes,
    token: Option<&str>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let path: http::uri::PathAndQuery = method.path.parse().expect("a method path");
    let one = || tokio_stream::iter(vec![message.clone()]);
    match (method.client_streaming, method.server_streaming) {
        (false, false) => grpc.unary(with_token(message.clone(), token), path, RawCodec).await.map(drop),
        (false, true) => {
            let stream = grpc.server_streaming(with_token(message.clone(), token), path, RawCodec).await?;
            first_message(stream.into_inner(), &method.path).await
        }
        (true, false) => grpc.client_streaming(with_token(one(), token), path, RawCodec).await.map(drop),
        (true, true) => {
            let stream = grpc.streaming(with_token(one(), token), path, RawCodec).await?;
            first_message(stream.into_inner(), &method.path).await
        }
    }
}

/// What a caller presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presented {
    Nothing,
    WrongToken,
    /// A token of the role's principal, revoked.
    RevokedToken,
    /// A token of the role's principal.
    ValidToken,
}

/// What the server does with a call, as far as access goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Answered: a response, or any status but UNAUTHENTICATED and PERMISSION_DENIED.
    Admitted,
    /// PERMISSION_DENIED.
    Denied,
    /// UNAUTHENTICATED.
    Unauthenticated,
}

/// What `RPC_ACCESS` says of a call of a method under `access` by a principal holding `role`
/// that presents `presented`.
fn expected(access: Access, role: Role, presented: Presented) -> Verdict {
    match (access, presented) {
        (Access::Public, _) => Verdict::Admitted,
        (Access::AnyPrincipal, Presented::ValidToken) => Verdict::Admitted,
        (Access::Roles(roles), Presented::ValidToken) if roles.contains(&role) => Verdict::Admitted,
        (Access::Roles(_), Presented::ValidToken) => Verdict::Denied,
        (_, Presented::Nothing | Presented::WrongToken | Presented::RevokedToken) => Verdict::Unauthenticated,
    }
}

/// Codes that say a call reached no handler (no such method, a broken transport): a call
/// the table admits must not end with one.
const NOT_ANSWERED: [Code; 6] =
    [Code::Unimplemented, Code::Internal, Code::Unknown, Code::Unavailable, Code::Cancelled, Code::DeadlineExceeded];

fn verdict(result: &Result<(), Status>) -> Verdict {
    match result {
        Err(status) if status.code() == Code::PermissionDenied => Verdict::Denied,
        Err(status) if status.code() == Code::Unauthenticated => Verdict::Unauthenticated,
        _ => Verdict::Admitted,
    }
}

/// One principal per role: (its role, its name, its grant).
const ROLE_PRINCIPALS: [(Role, &str, &str); 8] = [
    (Role::Admin, "admin", "admin"),
    (Role::Secretariat, "secretariat", "secretariat"),
    (Role::Delegate, "jp-delegation", "delegate:JP"),
    (Role::Authority, "us-authority", "authority:US"),
    (Role::Reader, "reader", "reader"),
    (Role::Auditor, "auditor", "auditor"),
    (Role::Operator, "operator", "operator"),
    // An obligation, not a permission: it opens no method.
    (Role::SignedOnly, "signer", "signed-only"),
];

// ------------------------------------------------------------------------------------------
// 1. Who may call what

#[test]
fn every_served_method_has_an_access_rule_and_every_rule_a_served_method() {
    let described = described_methods();
    let services: BTreeSet<String> =
        described.keys().map(|path| path.rsplit_once('/').unwrap().0.trim_start_matches('/').to_owned()).collect();
    let expected_services = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "pax.ledger.v1.AccessService",
        "pax.ledger.v1.AuditService",
        "pax.ledger.v1.LedgerService",
        "pax.ledger.v1.ProjectionService",
        "pax.ledger.v1.QueryService",
    ];
    assert_eq!(services, expected_services.iter().map(|s| s.to_string()).collect(), "the services walked");
    let listed: BTreeSet<&str> = RPC_ACCESS.iter().map(|(path, _)| *path).collect();
    assert_eq!(listed.len(), RPC_ACCESS.len(), "a method listed twice in RPC_ACCESS");
    let unlisted: Vec<&String> = described.keys().filter(|path| !listed.contains(path.as_str())).collect();
    assert!(unlisted.is_empty(), "methods with no entry in RPC_ACCESS (every principal is refused them): {unlisted:?}");
    let undescribed: Vec<&&str> = listed.iter().filter(|path| !described.contains_key(**path)).collect();
    assert!(undescribed.is_empty(), "RPC_ACCESS entries for methods no service has: {undescribed:?}");
    // The admin "grants and revokes access; everything else too".
    for (path, access) in RPC_ACCESS {
        assert_eq!(expected(*access, Role::Admin, Presented::ValidToken), Verdict::Admitted, "{path}: not for admin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers_every_role_and_credential_as_rpc_access_says() {
    let roles: BTreeSet<Role> = ROLE_PRINCIPALS.iter().map(|(role, _, _)| *role).collect();
    assert_eq!(roles, ROLES.into_iter().collect(), "one principal per role");
    let secured = Secured::start(Options::default()).await;
    let mut admin = secured.admin().await;
    // Per role: a valid token and a revoked one.
    let mut tokens: BTreeMap<Role, (String, String)> = BTreeMap::new();
    for (role, name, grant) in ROLE_PRINCIPALS {
        let valid = if role == Role::Admin { secured.admin.clone() } else { admin.principal(name, &[grant]).await };
        let (revoked, id) = admin.issue_token(name).await;
        admin.revoke_credential(name, &id).await;
        tokens.insert(role, (valid, revoked));
    }
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut random).unwrap();
    let wrong = token_of(&random);

    let methods = described_methods();
    let mut calls = Vec::new();
    for method in methods.values() {
        let access = pax_ledger::service::auth::access_of(&method.path)
            .unwrap_or_else(|| panic!("{}: no entry in RPC_ACCESS", method.path));
        // No credential and a wrong token say nothing of a role: once per method.
        calls.push((method.clone(), access, Role::Reader, Presented::Nothing, None));
        calls.push((method.clone(), access, Role::Reader, Presented::WrongToken, Some(wrong.clone())));
        for (role, (valid, revoked)) in &tokens {
            calls.push((method.clone(), access, *role, Presented::RevokedToken, Some(revoked.clone())));
            calls.push((method.clone(), access, *role, Presented::ValidToken, Some(valid.clone())));
        }
    }
    let count = calls.len();
    let channel = secured.server.channel().await;
    let started = Instant::now();
    let failures: Vec<String> = futures::stream::iter(calls)
        .map(|(method, access, role, presented, token)| {
            let channel = channel.clone();
            async move {
                let result = call_empty(&channel, &method, token.as_deref()).await;
                let (want, got) = (expected(access, role, presented), verdict(&result));
                let case = format!("{} as {role} with {presented:?}", method.path);
                if want != got {
                    return Some(format!("{case}: expected {want:?}, got {result:?}"));
                }
                let Err(status) = &result else { return None };
                let checked = match got {
                    Verdict::Denied => {
                        let principal = ROLE_PRINCIPALS.iter().find(|(r, _, _)| *r == role).unwrap().1;
                        reason(status) == "NOT_ALLOWED"
                            && status.message().contains(&method.path)
                            && status.message().contains(&format!("principal {principal} "))
                    }
                    Verdict::Unauthenticated => reason(status) == "UNAUTHENTICATED",
                    // Answered by the method's handler (a refusal of the empty request is an
                    // answer), not lost on the way.
                    Verdict::Admitted => !NOT_ANSWERED.contains(&status.code()),
                };
                (!checked).then(|| format!("{case}: {status:?}"))
            }
        })
        .buffer_unordered(8)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {count} calls answered otherwise than RPC_ACCESS says:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(methods.len(), RPC_ACCESS.len(), "the methods called, against the methods RPC_ACCESS lists");
    eprintln!("{count} calls in {:?}", started.elapsed());
    secured.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_ledger_serves_anyone_and_its_access_service_says_how_to_begin() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.expect("an anonymous append on an open ledger");
    let mut access = AccessServiceClient::new(server.channel().await);
    let whoami = access.who_am_i(pb::WhoAmIRequest {}).await.expect_err("nobody is anybody yet");
    assert_eq!(whoami.code(), Code::FailedPrecondition, "{whoami:?}");
    let grant = pb::GrantRequest {
        principal: "admin".into(),
        grants: vec![convert::grant_pb(&Grant::Admin)],
        reason: String::new(),
    };
    let status = access.grant(grant).await.expect_err("an anonymous grant");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("pax-ledger principal bootstrap --data DIR"), "{}", status.message());
    assert_eq!(server.ledger.durable_head().position.0, 1, "the grant wrote nothing");
    assert!(!server.ledger.access().is_closed());
    drop((client, access));
    server.stop().await;
}

// ------------------------------------------------------------------------------------------
// 2. What a scoped grant lets a principal record

/// An export rule of `origin` (the builder's are of the US).
fn rule_of(rule_id: &str, origin: &str) -> pb::ProposedEvent {
    let mut event = export_rule_changed(rule_id, pb::Treatment::Allowed, None);
    if let Some(pb::event_data::Kind::ExportRuleChanged(rule)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) {
        rule.origin = origin.into();
    }
    event
}

/// Appends `events` as the principal of `token`, which must be refused with NOT_ALLOWED naming
/// `principal` and the grant `needs`; nothing may be written.
async fn assert_not_allowed(
    secured: &Secured,
    client: &mut LedgerServiceClient<Channel>,
    (principal, token): (&str, &str),
    events: Vec<pb::ProposedEvent>,
    needs: &str,
) {
    let before = secured.head();
    let status = append_with(client, token, events).await.expect_err("an event beyond the principal's grants");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(&status), "NOT_ALLOWED", "{status:?}");
    assert_eq!(error_info_metadata(&status)["principal"], principal);
    let message = status.message();
    assert!(message.contains(&format!("principal {principal} may not")), "{message}");
    assert!(message.contains(&format!("needs {needs} or admin")), "{message}");
    assert_eq!(secured.head(), before, "a refused request wrote something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_grant_records_for_its_code_only_and_a_refusal_writes_nothing() {
    let secured = Secured::start(Options::default()).await;
    let mut admin = secured.admin().await;
    let secretariat = admin.principal("secretariat", &["secretariat"]).await;
    let jp = admin.principal("jp-delegation", &["delegate:JP"]).await;
    let us = admin.principal("us-authority", &["authority:US"]).await;
    let mut client = secured.server.client().await;

    // The secretariat records memberships; the admin anything.
    append_with(
        &mut client,
        &secretariat,
        vec![without_actor(member_joined("JP")), without_actor(member_joined("KR"))],
    )
    .await
    .expect("the secretariat records member_joined");
    let kr_commitment = id();
    append_with(
        &mut client,
        &secured.admin,
        vec![without_actor(commitment_made(&kr_commitment, "KR")), without_actor(rule_of("nl-rule", "NL"))],
    )
    .await
    .expect("the admin records a commitment of KR and a rule of NL");

    // A delegate of JP: JP's commitments only.
    let jp_commitment = id();
    append_with(&mut client, &jp, vec![without_actor(commitment_made(&jp_commitment, "JP"))])
        .await
        .expect("a delegate of JP records a commitment of JP");
    let as_jp = ("jp-delegation", jp.as_str());
    assert_not_allowed(&secured, &mut client, as_jp, vec![without_actor(commitment_made(&id(), "KR"))], "delegate:KR")
        .await;
    assert_not_allowed(
        &secured,
        &mut client,
        as_jp,
        vec![without_actor(commitment_fulfilled(&kr_commitment))],
        "delegate:KR",
    )
    .await;
    assert_not_allowed(
        &secured,
        &mut client,
        as_jp,
        vec![without_actor(commitment_withdrawn(&kr_commitment))],
        "delegate:KR",
    )
    .await;
    // A request is all or nothing: the JP commitment before the KR one is not written either.
    let allowed_then_not =
        vec![without_actor(commitment_made(&id(), "JP")), without_actor(commitment_made(&id(), "KR"))];
    assert_not_allowed(&secured, &mut client, as_jp, allowed_then_not, "delegate:KR").await;
    assert_not_allowed(&secured, &mut client, as_jp, vec![without_actor(member_joined("DE"))], "secretariat").await;
    append_with(&mut client, &jp, vec![without_actor(commitment_fulfilled(&jp_commitment))])
        .await
        .expect("a delegate of JP fulfils a commitment of JP");

    // An authority for US: the rules whose origin is the US only.
    append_with(&mut client, &us, vec![without_actor(rule_of("us-rule", "US"))])
        .await
        .expect("an authority for US records a rule of US origin");
    let as_us = ("us-authority", us.as_str());
    assert_not_allowed(
        &secured,
        &mut client,
        as_us,
        vec![without_actor(rule_of("another-nl-rule", "NL"))],
        "authority:NL",
    )
    .await;
    // The rule already recorded with origin NL: judged by its stored origin, whatever the
    // change says.
    assert_not_allowed(&secured, &mut client, as_us, vec![without_actor(rule_of("nl-rule", "US"))], "authority:NL")
        .await;
    assert_not_allowed(&secured, &mut client, as_us, vec![without_actor(commitment_made(&id(), "JP"))], "delegate:JP")
        .await;

    // The secretariat records no commitment.
    let as_secretariat = ("secretariat", secretariat.as_str());
    assert_not_allowed(
        &secured,
        &mut client,
        as_secretariat,
        vec![without_actor(commitment_made(&id(), "JP"))],
        "delegate:JP",
    )
    .await;

    // Not even the admin records access events through Append: they go through AccessService.
    let grant = pb::event_data::Kind::AccessGranted(pb::AccessGranted {
        principal: "intruder".into(),
        grants: vec![convert::grant_pb(&Grant::Admin)],
        reason: String::new(),
    });
    let before = secured.head();
    let status = append_with(&mut client, &secured.admin, vec![without_actor(event(grant))]).await.expect_err("Append");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("access events are recorded through AccessService"), "{}", status.message());
    assert_eq!(secured.head(), before);

    // What was written, and by whom: the accepted requests only, each event under the name of
    // the principal that sent it with an empty actor.
    let written: Vec<(String, String)> = log_as(&secured.server, &secured.admin)
        .await
        .into_iter()
        .filter(|e| !e.stream.starts_with("principal-"))
        .map(|e| (e.event_type, e.metadata.unwrap_or_default().actor))
        .collect();
    let expected = [
        ("member_joined", "secretariat"),
        ("member_joined", "secretariat"),
        ("commitment_made", "admin"),
        ("export_rule_changed", "admin"),
        ("commitment_made", "jp-delegation"),
        ("commitment_fulfilled", "jp-delegation"),
        ("export_rule_changed", "us-authority"),
    ];
    assert_eq!(written, expected.map(|(t, a)| (t.to_owned(), a.to_owned())));
    secured.stop().await;
}

// ------------------------------------------------------------------------------------------
// 3. The actor, the access events in the history, and the bundle

/// `pax-ledger ARGS` to its end: (succeeded, stdout, stderr).
async fn pax(args: &[&str]) -> (bool, String, String) {
    let output = run_to_end(pax_ledger(args), b"").await;
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// `pax-ledger ARGS`, which must succeed: its stdout's lines as JSON.
async fn pax_json(args: &[&str]) -> Vec<Value> {
    let (ok, stdout, stderr) = pax(args).await;
    assert!(ok, "pax-ledger {args:?} failed: {stderr}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loads_with_a_token_as_its_principal() {
    let secured = Secured::start(Options::default()).await;
    let url = secured.server.url.clone();
    let (ok, _, stderr) = pax(&["demo", "--addr", &url]).await;
    assert!(!ok && stderr.contains("UNAUTHENTICATED"), "without a token: {stderr}");
    let head = secured.head();
    let as_admin = ["--addr", url.as_str(), "--token", secured.admin.as_str(), "--output", "json"];
    let report = pax_json(&[&["demo"][..], &as_admin].concat()).await;
    assert_eq!(report[0]["rejected"], 0, "{report:?}");
    let loaded = log_as(&secured.server, &secured.admin).await;
    let demo: Vec<_> = loaded.iter().filter(|e| e.position > head).collect();
    assert_eq!(demo.len() as u64, report[0]["appended"].as_u64().unwrap(), "{report:?}");
    assert!(!demo.is_empty());
    for event in demo {
        assert_eq!(event.metadata.as_ref().unwrap().actor, "admin", "position {}", event.position);
    }
    secured.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_changes_and_actors_are_recorded_in_the_history_and_the_bundle_verifies() {
    let secured = Secured::start(Options::default()).await;
    let url = secured.server.url.clone();
    let as_admin = ["--addr", url.as_str(), "--token", secured.admin.as_str(), "--output", "json"];
    let granted =
        pax_json(&[&["principal", "grant", "clerk", "secretariat", "--reason", "joins"][..], &as_admin].concat()).await;
    assert_eq!(granted[0]["events"][0]["stream"], "principal-clerk", "{granted:?}");
    let issued = pax_json(&[&["token", "new", "clerk"][..], &as_admin].concat()).await;
    let clerk = issued[0]["token"].as_str().expect("the token").to_owned();
    let clerk_credential = issued[0]["credential_id"].as_str().unwrap().to_owned();
    assert_eq!(clerk_credential, Credential::of_token(&clerk).id());
    let mut client = secured.server.client().await;

    // An empty actor is filled in with the principal's name; its own name is accepted.
    append_with(&mut client, &clerk, vec![without_actor(member_joined("JP"))]).await.expect("an event with no actor");
    append_with(&mut client, &clerk, vec![under_actor(member_joined("KR"), "clerk")])
        .await
        .expect("its own name as actor");
    // Someone else's name is refused, in any event of the request, and nothing is written.
    let before = secured.head();
    for events in [
        vec![under_actor(member_joined("NL"), "secretariat")],
        vec![without_actor(member_joined("DE")), under_actor(member_joined("FR"), "admin")],
    ] {
        let index = events.len() - 1;
        let status = append_with(&mut client, &clerk, events).await.expect_err("another actor's name");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(reason(&status), "ACTOR_MISMATCH", "{status:?}");
        assert_eq!(error_info_metadata(&status)["principal"], "clerk");
        assert!(status.message().starts_with(&format!("events[{index}]: metadata.actor ")), "{}", status.message());
        assert!(status.message().contains("is not the authenticated principal clerk"), "{}", status.message());
        assert_eq!(secured.head(), before, "a refused request wrote something");
    }

    // Everything taken away: the token no longer authenticates, from the next call on.
    let revoked = pax_json(&[&["principal", "revoke", "clerk", "--reason", "left"][..], &as_admin].concat()).await;
    assert_eq!(revoked[0]["events"].as_array().unwrap().len(), 2, "{revoked:?}");
    for result in [
        append_with(&mut client, &clerk, vec![without_actor(member_joined("NL"))]).await.map(drop),
        client.read_all(authed(pb::ReadAllRequest::default(), &clerk)).await.map(drop),
    ] {
        let status = result.expect_err("a revoked token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(reason(&status), "UNAUTHENTICATED");
    }

    // The history, read by the admin through the binary.
    let history = pax_json(&[&["history"][..], &as_admin].concat()).await;
    assert_eq!(history.len() as u64, secured.head(), "the whole log");
    let clerk_stream: Vec<(&str, &str)> = history
        .iter()
        .filter(|e| e["stream"] == "principal-clerk")
        .map(|e| (e["type"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        clerk_stream,
        [
            ("access_granted", "admin"),
            ("credential_issued", "admin"),
            // A full revocation takes the credentials first, then the grants.
            ("credential_revoked", "admin"),
            ("access_revoked", "admin")
        ]
    );
    let of_type = |t: &str| history.iter().find(|e| e["stream"] == "principal-clerk" && e["type"] == t).unwrap();
    assert_eq!(of_type("access_granted")["data"]["grants"], serde_json::json!(["secretariat"]));
    assert_eq!(of_type("access_granted")["data"]["reason"], "joins");
    assert_eq!(of_type("access_revoked")["data"]["grants"], serde_json::json!(["secretariat"]));
    assert_eq!(of_type("access_revoked")["data"]["reason"], "left");
    assert_eq!(of_type("credential_revoked")["data"]["credential"]["id"], clerk_credential.as_str());
    assert_eq!(of_type("credential_revoked")["data"]["reason"], "left");
    // The ledger keeps the token's digest, never the token.
    assert!(!history.iter().any(|e| e.to_string().contains(&clerk)), "the token is in the log");
    let members: Vec<(&str, &str)> = history
        .iter()
        .filter(|e| e["type"] == "member_joined")
        .map(|e| (e["stream"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(members, [("member-JP", "clerk"), ("member-KR", "clerk")]);
    let head = secured.head();

    // Stopped, exported, verified.
    let secured_admin = secured.admin.clone();
    let dir = secured.stop().await;
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("ledger.jsonl");
    let (data, bundle_arg) = (dir.path().to_str().unwrap(), bundle.to_str().unwrap());
    let exported = pax_json(&["export", "--data", data, "--to", bundle_arg, "--output", "json"]).await;
    assert_eq!(exported.last().unwrap()["records"], head, "{exported:?}");
    let verified = pax_json(&["verify", "--bundle", bundle_arg, "--output", "json"]).await;
    assert_eq!(verified.last().unwrap()["verdict"], "ok", "{verified:?}");
    assert_eq!(verified.last().unwrap()["position"], head, "{verified:?}");

    // Imported elsewhere, the log brings its access with it: the same principals, the same
    // credentials, and no call without one.
    let imported = out.path().join("imported");
    pax_json(&["import", "--bundle", bundle_arg, "--data", imported.to_str().unwrap(), "--output", "json"]).await;
    let server = TestServer::start_in(&imported).await;
    let mut client = server.client().await;
    let anonymous = client.read_all(pb::ReadAllRequest::default()).await.expect_err("an anonymous read");
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let status = client.read_all(authed(pb::ReadAllRequest::default(), &clerk)).await.expect_err("the revoked token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(log_as(&server, &secured_admin).await.len() as u64, head);
    drop(client);
    server.stop().await;
}

// ------------------------------------------------------------------------------------------
// 4. Client certificates under mutual TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_client_certificate_authenticates_its_principal_without_a_token() {
    let pki = Pki::new();
    let unbound = pki.issue_client("unbound");
    let secured = Secured::start(pki.options(true)).await;
    let url = secured.server.url.clone();
    // The unbound certificate opens the connection; the admin's token says who calls.
    let mut admin = Admin::on(tls_channel(&url, &pki.ca, Some(&unbound)).await.unwrap(), &secured.admin);
    admin.grant("audit-office", &["auditor"]).await;
    let (ca, unbound_cert, unbound_key) = (pki.ca.cert_arg(), unbound.cert_arg(), unbound.key_arg());
    let bound = pax_json(&[
        "principal",
        "bind-cert",
        "audit-office",
        "--cert",
        pki.client.cert_arg(),
        "--addr",
        &url,
        "--ca-cert",
        ca,
        "--client-cert",
        unbound_cert,
        "--client-key",
        unbound_key,
        "--token",
        &secured.admin,
        "--output",
        "json",
    ])
    .await;
    assert_eq!(bound[0]["events"][0]["stream"], "principal-audit-office", "{bound:?}");

    // The bound certificate alone: the principal, with its grants.
    let channel = tls_channel(&url, &pki.ca, Some(&pki.client)).await.unwrap();
    let mut access = AccessServiceClient::new(channel.clone());
    let me = access.who_am_i(pb::WhoAmIRequest {}).await.expect("who am I, by certificate").into_inner();
    assert_eq!(me.name, "audit-office");
    let fingerprint = pki.client.fingerprint();
    let certificate = pb::Credential {
        kind: pb::CredentialKind::Certificate as i32,
        digest: fingerprint.clone(),
        id: fingerprint[..16].to_owned(),
    };
    assert_eq!(me.credentials, [certificate]);
    let listed = access.list_principals(pb::ListPrincipalsRequest {}).await.expect("an auditor lists principals");
    let names: Vec<String> = listed.into_inner().principals.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["admin", "audit-office"]);
    let before = secured.head();
    let refused = LedgerServiceClient::new(channel.clone())
        .append(append(vec![without_actor(member_joined("JP"))]))
        .await
        .expect_err("an auditor records nothing");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("principal audit-office (holding auditor)"), "{}", refused.message());
    assert_eq!(secured.head(), before);

    // A certificate of the same CA that is bound to nobody: the handshake passes, the call
    // does not.
    let stranger = AccessServiceClient::new(tls_channel(&url, &pki.ca, Some(&unbound)).await.unwrap())
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("an unbound certificate");
    assert_eq!(stranger.code(), Code::Unauthenticated, "{stranger:?}");
    assert!(stranger.message().contains(&unbound.fingerprint()), "{}", stranger.message());

    // Plaintext to the TLS port: no answer at all, even with the admin's token.
    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", secured.server.addr)).unwrap().connect().await?;
        Ok::<_, tonic::transport::Error>(AccessServiceClient::new(channel))
    }
    .await;
    if let Ok(mut plaintext) = plaintext {
        let status = plaintext
            .who_am_i(authed(pb::WhoAmIRequest {}, &secured.admin))
            .await
            .expect_err("a plaintext call to a TLS port");
        assert!(
            ![Code::Ok, Code::Unauthenticated, Code::PermissionDenied].contains(&status.code()),
            "a plaintext call reached the server's services: {status:?}"
        );
    }

    // The certificate revoked: it authenticates nobody from the next call on.
    admin.revoke_credential("audit-office", &fingerprint[..16]).await;
    let status = access.who_am_i(pb::WhoAmIRequest {}).await.expect_err("a revoked certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains(&fingerprint), "{}", status.message());
    drop((access, channel, admin));
    secured.stop().await;
}

// ------------------------------------------------------------------------------------------
// 5. Limits per principal

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_rate_is_resource_exhausted_with_retry_info() {
    let limits = AccessLimits { requests_per_second: 5, ..AccessLimits::default() };
    let secured = Secured::start(Options { limits, ..Options::default() }).await;
    let mut admin = secured.admin().await;
    let flood = admin.principal("flood", &["reader"]).await;
    let client = secured.server.client().await;
    let read = |token: String| {
        let mut client = client.clone();
        async move {
            let request = pb::ReadAllRequest { page_size: 1, ..Default::default() };
            client.read_all(authed(request, &token)).await.map(drop)
        }
    };
    // 30 at once: the bucket holds one second's worth, 5, and refills 5 a second.
    let started = Instant::now();
    let results = futures::future::join_all((0..30).map(|_| read(flood.clone()))).await;
    let elapsed = started.elapsed();
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let refilled = (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    assert!((5..=5 + refilled).contains(&admitted), "{admitted} of 30 admitted in {elapsed:?}");
    let mut longest = Duration::ZERO;
    for status in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason(status), "RATE_LIMITED", "{status:?}");
        assert!(status.message().starts_with("principal flood is over its rate of 5 requests a second"), "{status:?}");
        let retry = status.get_details_retry_info().unwrap_or_else(|| panic!("no RetryInfo in {status:?}"));
        let delay = retry.retry_delay.expect("a retry delay");
        assert!(delay > Duration::ZERO && delay <= Duration::from_millis(200), "{delay:?}");
        longest = longest.max(delay);
    }
    assert!(longest > Duration::ZERO, "nothing was refused");
    // Another principal has its own bucket.
    admin
        .access
        .list_principals(authed(pb::ListPrincipalsRequest {}, &secured.admin))
        .await
        .expect("the admin is not limited by the reader's flood");
    // After the delay it said, the principal is admitted again.
    tokio::time::sleep(longest + Duration::from_millis(20)).await;
    read(flood.clone()).await.expect("admitted again after the retry delay");
    drop((client, admin));
    secured.stop().await;
}

/// Subscribes as the principal of `token`.
async fn subscribe_as(
    client: &mut LedgerServiceClient<Channel>,
    token: &str,
) -> Result<tonic::Streaming<pb::SubscribeResponse>, Status> {
    client.subscribe(authed(pb::SubscribeRequest::default(), token)).await.map(tonic::Response::into_inner)
}

#[track_caller]
fn assert_subscriptions_full(result: Result<tonic::Streaming<pb::SubscribeResponse>, Status>, principal: &str) {
    let status = result.expect_err("a subscription over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().starts_with(&format!("principal {principal} already holds 2 subscriptions")),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_holds_at_most_its_subscriptions_and_a_closed_one_is_given_back() {
    let limits = AccessLimits { requests_per_second: 0, subscriptions_max: 2 };
    let secured = Secured::start(Options { limits, ..Options::default() }).await;
    let mut admin = secured.admin().await;
    let follower = admin.principal("follower", &["reader"]).await;
    let other = admin.principal("other", &["reader"]).await;
    let mut client = secured.server.client().await;

    let mut first = subscribe_as(&mut client, &follower).await.expect("a first subscription");
    let mut second = subscribe_as(&mut client, &follower).await.expect("a second subscription");
    for stream in [&mut first, &mut second] {
        assert!(matches!(next_message(stream).await, pb::subscribe_response::Message::Event(_)));
    }
    assert_subscriptions_full(subscribe_as(&mut client, &follower).await, "follower");
    // Counted per principal.
    let mut others = subscribe_as(&mut client, &other).await.expect("another principal's subscription");
    assert!(matches!(next_message(&mut others).await, pb::subscribe_response::Message::Event(_)));

    // Closed by the client: its place comes back once the server sees the stream reset.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut third = loop {
        match subscribe_as(&mut client, &follower).await {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("the closed subscription's place never came back: {status:?}"),
        }
    };
    assert!(matches!(next_message(&mut third).await, pb::subscribe_response::Message::Event(_)));
    assert_subscriptions_full(subscribe_as(&mut client, &follower).await, "follower");
    drop((second, third, others, client, admin));
    secured.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_delivers_nothing_more_once_its_credential_is_revoked() {
    let secured = Secured::start(Options::default()).await;
    let mut admin = secured.admin().await;
    let follower = admin.principal("follower", &["reader"]).await;
    let (follower_again, _) = admin.issue_token("follower").await;
    let clerk = admin.principal("clerk", &["secretariat"]).await;
    let mut client = secured.server.client().await;
    append_with(&mut client, &clerk, vec![without_actor(member_joined("JP"))]).await.unwrap();
    let mut revoked = subscribe_as(&mut client, &follower).await.expect("subscribe");
    let mut kept = subscribe_as(&mut client, &follower_again).await.expect("subscribe with the other token");
    for stream in [&mut revoked, &mut kept] {
        while !matches!(next_message(stream).await, pb::subscribe_response::Message::CaughtUp(_)) {}
    }

    let id = Credential::of_token(&follower).id();
    admin.revoke_credential("follower", &id).await;
    append_with(&mut client, &clerk, vec![without_actor(member_joined("KR"))]).await.unwrap();
    let status = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, revoked.message())
        .await
        .expect("the revoked subscription answers")
        .expect_err("the event after the revocation is not delivered");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The same principal's other token still follows (the revocation, then the new member):
    // it was not revoked.
    for stream in ["principal-follower", "member-KR"] {
        match next_message(&mut kept).await {
            pb::subscribe_response::Message::Event(event) => assert_eq!(event.stream, stream),
            other => panic!("{other:?}"),
        }
    }
    // A principal whose grants no longer cover reading gets nothing more either.
    let mut reader = subscribe_as(&mut client, &clerk).await.expect("the clerk subscribes");
    while !matches!(next_message(&mut reader).await, pb::subscribe_response::Message::CaughtUp(_)) {}
    let revoke = pb::RevokeRequest {
        principal: "clerk".into(),
        grants: vec![convert::grant_pb(&Grant::Secretariat)],
        reason: "test".into(),
    };
    admin.access.revoke(authed(revoke, &admin.token)).await.unwrap();
    append_with(&mut client, &secured.admin, vec![without_actor(member_joined("NL"))]).await.unwrap();
    let status = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, reader.message())
        .await
        .expect("the clerk's subscription answers")
        .expect_err("nothing more for a principal without grants");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    drop((revoked, kept, reader, client, admin));
    secured.stop().await;
}

// ------------------------------------------------------------------------------------------
// 6. The first admin, offline, with the binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_bootstraps_the_first_admin_once_and_the_server_then_requires_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let (ok, stdout, stderr) = pax(&["principal", "bootstrap", "--data", data_arg]).await;
    assert!(ok, "{stderr}");
    let token = stdout.trim_end_matches('\n');
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let digits = token.strip_prefix("pxl_").unwrap_or_else(|| panic!("not a token: {stdout}"));
    assert!(digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let id = Credential::of_token(token).id();
    assert!(stderr.contains(&format!("principal admin holds admin, with token {id}")), "{stderr}");

    let serving = ServerProcess::start(&data, &dir.path().join("serve.stderr")).await;
    let url = serving.url.clone();
    for credential in [&[][..], &["--token", "pxl_not-a-token"][..]] {
        let (ok, stdout, stderr) = pax(&[&["principal", "list", "--addr", &url][..], credential].concat()).await;
        assert!(!ok, "principal list {credential:?} succeeded: {stdout}");
        assert!(stderr.starts_with("error: UNAUTHENTICATED: "), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
    let listed = pax_json(&["principal", "list", "--addr", &url, "--token", token, "--output", "json"]).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "admin");
    assert_eq!(listed[0]["grants"], serde_json::json!(["admin"]));
    assert_eq!(listed[0]["credentials"], serde_json::json!([format!("token {id}")]));
    let me = pax_json(&["principal", "whoami", "--addr", &url, "--token", token, "--output", "json"]).await;
    assert_eq!(me[0]["name"], "admin");
    let pid = serving.pid();
    assert!(serving.terminate(pid).await.success());

    // An admin with a credential exists: a second bootstrap is refused and writes nothing.
    let (ok, stdout, stderr) = pax(&["principal", "bootstrap", "--data", data_arg]).await;
    assert!(!ok, "a second bootstrap succeeded: {stdout}");
    assert!(stdout.is_empty(), "a token was printed: {stdout}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("an admin with a credential exists"), "{stderr}");
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&data, LedgerConfig::default()))
        .await
        .unwrap()
        .expect("open the stopped ledger");
    assert_eq!(ledger.durable_head().position.0, 2, "the grant and the token of the first bootstrap only");
    assert_eq!(ledger.access().principals().count(), 1);
    tokio::task::spawn_blocking(move || ledger.shutdown()).await.unwrap();
}

/// `principal bootstrap --data DATA`, which must succeed: the token it printed.
async fn bootstrap_with_the_binary(data: &Path) -> String {
    let (ok, stdout, stderr) = pax(&["principal", "bootstrap", "--data", data.to_str().unwrap()]).await;
    assert!(ok, "{stderr}");
    stdout.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_recovers_access_once_no_admin_can_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let lost = bootstrap_with_the_binary(dir.path()).await;
    let server = TestServer::start_in(dir.path()).await;
    // The last admin revokes its own (only) token: nobody can administer the ledger any more.
    let mut admin = Admin::on(server.channel().await, &lost);
    admin.revoke_credential("admin", &Credential::of_token(&lost).id()).await;
    let status = admin.access.who_am_i(authed(pb::WhoAmIRequest {}, &lost)).await.expect_err("a revoked token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    drop(admin);
    server.stop().await;

    // The operator, at the stopped server's directory, gives the admin a new token.
    let token = bootstrap_with_the_binary(dir.path()).await;
    let server = TestServer::start_in(dir.path()).await;
    let mut access = AccessServiceClient::new(server.channel().await);
    let me = access.who_am_i(authed(pb::WhoAmIRequest {}, &token)).await.expect("the new token").into_inner();
    assert_eq!(me.name, "admin");
    assert_eq!(me.grants, [convert::grant_pb(&Grant::Admin)]);
    assert_eq!(me.credentials, [convert::credential_pb(&Credential::of_token(&token))]);
    let status = access.who_am_i(authed(pb::WhoAmIRequest {}, &lost)).await.expect_err("the lost token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let admin_stream: Vec<String> = log_as(&server, &token).await.into_iter().map(|e| e.event_type).collect();
    assert_eq!(admin_stream, ["access_granted", "credential_issued", "credential_revoked", "credential_issued"]);
    drop(access);
    server.stop().await;
    // And again it is refused: an admin with a credential exists.
    let (ok, stdout, stderr) = pax(&["principal", "bootstrap", "--data", dir.path().to_str().unwrap()]).await;
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("an admin with a credential exists"), "{stderr}");
}
