use crate::support::*;

#[tokio::test]
async fn append_then_read_back_after_restart() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let response = client.append(append(vec![member_joined("JP"), member_joined("KR")])).await.unwrap().into_inner();
    assert_eq!(response.events.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2]);
    let server = server.restart().await;
    let mut client = server.client().await;
    let events = read_all(&mut client).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].stream, "member-KR");
    server.stop().await;
}
