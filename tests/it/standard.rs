//! The standard services: health and server reflection (v1 and v1alpha), so that grpcurl,
//! Evans, Postman and grpc-health-probe work without the `.proto` files.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

use crate::support::*;

const LEDGER_SERVICE: &str = "pax.ledger.v1.LedgerService";

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_ledger_service() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", LEDGER_SERVICE] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1_lists_the_services_and_serves_the_contract() {
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let requests =
        [MessageRequest::ListServices(String::new()), MessageRequest::FileContainingSymbol(LEDGER_SERVICE.into())]
            .map(|r| v1::ServerReflectionRequest { host: String::new(), message_request: Some(r) });
    let mut responses = client.server_reflection_info(futures::stream::iter(requests)).await.unwrap().into_inner();

    let listed = responses.message().await.unwrap().unwrap().message_response.unwrap();
    let MessageResponse::ListServicesResponse(list) = listed else { panic!("expected a service list, got {listed:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&LEDGER_SERVICE), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let file = responses.message().await.unwrap().unwrap().message_response.unwrap();
    let MessageResponse::FileDescriptorResponse(files) = file else { panic!("expected descriptors, got {file:?}") };
    let decoded: Vec<prost_types::FileDescriptorProto> =
        files.file_descriptor_proto.iter().map(|b| prost::Message::decode(b.as_slice()).unwrap()).collect();
    let ledger = decoded.iter().find(|f| f.package() == "pax.ledger.v1").expect("the ledger's file");
    let methods: Vec<_> = ledger.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["Append", "ReadStream", "ReadAll", "GetEvent", "Subscribe"]);
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_answers_older_clients() {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let listed = responses.message().await.unwrap().unwrap().message_response.unwrap();
    let MessageResponse::ListServicesResponse(list) = listed else { panic!("expected a service list, got {listed:?}") };
    assert!(list.service.iter().any(|s| s.name == LEDGER_SERVICE));
    server.stop().await;
}

#[tokio::test]
async fn appends_after_the_ledger_closes_get_unavailable() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    server.ledger.close();
    let refused = client.append(append(vec![member_joined("KR")])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    server.stop().await;
}
