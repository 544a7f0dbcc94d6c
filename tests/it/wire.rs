//! Requests as bytes on the wire, beyond what the generated clients send: messages with unknown
//! fields, messages over the size limit, messages that are not valid protobuf.

use pax_ledger::proto::v1 as pb;
use pax_ledger::server::REQUEST_BYTES_MAX;
use tonic::Code;

use crate::support::*;

/// An `AppendRequest` as a newer or careless client might send it: the known field, and padding
/// in a field this server does not know (which prost skips when decoding).
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedAppendRequest {
    #[prost(message, repeated, tag = "1")]
    events: Vec<pb::ProposedEvent>,
    #[prost(bytes = "vec", tag = "99")]
    padding: Vec<u8>,
}

/// A `GetMemberRequest` with padding in an unknown field.
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedGetMemberRequest {
    #[prost(string, tag = "1")]
    code: String,
    #[prost(bytes = "vec", tag = "99")]
    padding: Vec<u8>,
}

/// A `ProposedEvent` whose `event_id` (a string) may hold any bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawProposedEvent {
    #[prost(bytes = "vec", tag = "1")]
    event_id: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    data: Option<pb::EventData>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawAppendRequest {
    #[prost(message, repeated, tag = "1")]
    events: Vec<RawProposedEvent>,
}

/// A `GetMemberRequest` or a `SubscribeRequest` whose strings may hold any bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawGetMemberRequest {
    #[prost(bytes = "vec", tag = "1")]
    code: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawSubscribeRequest {
    #[prost(uint64, tag = "1")]
    from_position: u64,
    #[prost(bytes = "vec", repeated, tag = "2")]
    stream_prefixes: Vec<Vec<u8>>,
}

/// Bytes that are not UTF-8 (a lone continuation byte, then an invalid lead byte).
const NOT_UTF8: &[u8] = &[b'J', 0x80, 0xFF];

/// `events`, padded so that the encoded request is exactly `bytes` long.
fn padded_append(events: Vec<pb::ProposedEvent>, bytes: usize) -> PaddedAppendRequest {
    let mut request = PaddedAppendRequest { events, padding: Vec::new() };
    let mut padding = bytes.saturating_sub(prost::Message::encoded_len(&request) + 6);
    loop {
        request.padding = vec![0xAB; padding];
        match prost::Message::encoded_len(&request) {
            len if len == bytes => return request,
            len if len < bytes => padding += bytes - len,
            len => padding -= len - bytes,
        }
    }
}

/// Calls `method` (`/package.Service/Method`) with `request` encoded as it is, and decodes the
/// answer as `R`.
async fn call<Q, R>(server: &TestServer, method: &'static str, request: Q) -> Result<R, tonic::Status>
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("the channel is ready");
    let codec = tonic_prost::ProstCodec::<Q, R>::default();
    let path = http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(request), path, codec).await.map(tonic::Response::into_inner)
}

const APPEND: &str = "/pax.ledger.v1.LedgerService/Append";
const GET_MEMBER: &str = "/pax.ledger.v1.QueryService/GetMember";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limit_counts_the_bytes_received_unknown_fields_included() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();

    let over = padded_append(vec![member_joined("KR")], REQUEST_BYTES_MAX + 1);
    let status = call::<_, pb::AppendResponse>(&server, APPEND, over.clone()).await.expect_err("one byte too many");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(&(REQUEST_BYTES_MAX + 1).to_string()), "{}", status.message());
    assert_eq!(head_position(&mut client).await, 1, "nothing written");
    let id = over.events[0].event_id.clone();
    assert_eq!(client.get_event(pb::GetEventRequest { event_id: id }).await.unwrap_err().code(), Code::NotFound);

    // At the limit exactly, the request is taken (the unknown field is skipped).
    let at = padded_append(vec![member_joined("KR")], REQUEST_BYTES_MAX);
    let response = call::<_, pb::AppendResponse>(&server, APPEND, at).await.expect("a request at the limit");
    assert_eq!(response.events[0].position, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_far_over_the_size_limit_is_resource_exhausted_too() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let seventy = padded_append(vec![member_joined("KR")], 70 * 1024 * 1024);
    let status = call::<_, pb::AppendResponse>(&server, APPEND, seventy).await.expect_err("70 MiB");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let mut client = server.client().await;
    assert_eq!(head_position(&mut client).await, 1, "nothing written");
    server.stop().await;
}

/// One limit for every service: a query over it is RESOURCE_EXHAUSTED too, and one under it is
/// answered (tonic's default limit of 4 MiB would have refused it with OUT_OF_RANGE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_has_the_same_size_limit() {
    let server = TestServer::start().await;
    server.client().await.append(append(vec![member_joined("JP")])).await.unwrap();
    let request = |bytes: usize| PaddedGetMemberRequest { code: "JP".into(), padding: vec![0; bytes] };
    let status = call::<_, pb::GetMemberResponse>(&server, GET_MEMBER, request(REQUEST_BYTES_MAX)).await;
    assert_eq!(status.expect_err("over the limit").code(), Code::ResourceExhausted);
    let answer = call::<_, pb::GetMemberResponse>(&server, GET_MEMBER, request(5 * 1024 * 1024)).await;
    assert_eq!(answer.expect("5 MiB is within the limit").member.map(|m| m.code), Some("JP".to_owned()));
    server.stop().await;
}

/// A string field holding bytes that are not UTF-8 makes the request invalid protobuf: the
/// client's fault, INVALID_ARGUMENT naming the field (it was INTERNAL), and nothing written.
#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();

    let valid = member_joined("KR");
    let raw = |event_id: &[u8]| RawAppendRequest {
        events: vec![RawProposedEvent { event_id: event_id.to_vec(), data: valid.data.clone() }],
    };
    let status = call::<_, pb::AppendResponse>(&server, APPEND, raw(NOT_UTF8)).await.expect_err("not UTF-8");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["events.event_id"], "{status:?}");
    assert_eq!(head_position(&mut client).await, 1, "nothing written");
    // The same request with a valid id is taken: the message is otherwise well formed.
    let response = call::<_, pb::AppendResponse>(&server, APPEND, raw(valid.event_id.as_bytes())).await.unwrap();
    assert_eq!(response.events[0].position, 2);

    let status = call::<_, pb::GetMemberResponse>(&server, GET_MEMBER, RawGetMemberRequest { code: NOT_UTF8.to_vec() })
        .await
        .expect_err("not UTF-8");
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["code".to_owned()]));

    // A server-streaming call too.
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let request = RawSubscribeRequest { from_position: 0, stream_prefixes: vec![NOT_UTF8.to_vec()] };
    let status = grpc
        .server_streaming(
            tonic::Request::new(request),
            http::uri::PathAndQuery::from_static("/pax.ledger.v1.LedgerService/Subscribe"),
            tonic_prost::ProstCodec::<RawSubscribeRequest, pb::SubscribeResponse>::default(),
        )
        .await
        .expect_err("not UTF-8");
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["stream_prefixes".to_owned()]));
    server.stop().await;
}
