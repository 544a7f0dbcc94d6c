//! Idempotent appends: a retry of an acknowledged request returns the original places and writes
//! nothing, before and after a restart; the same id with other content is refused; a retry that
//! races its original leaves exactly one copy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pb::event_data::Kind;
use tokio::sync::Barrier;
use tonic::Code;

use crate::support::*;

/// A multi-stream batch with expectations, as a careful client would send it.
fn original_batch() -> pb::AppendRequest {
    let project = id();
    append_expecting(
        vec![
            member_joined("JP"),
            member_joined("KR"),
            export_rule_changed("us-cn-retry", pb::Treatment::Prohibited, None),
            export_rule_changed("us-cn-retry", pb::Treatment::LicenseRequired, None),
            project_identified(&project, "JP", &["KR"]),
        ],
        vec![
            expect_state("member-JP", pb::ExpectedState::NoStream),
            expect_state("export-rule-us-cn-retry", pb::ExpectedState::NoStream),
        ],
    )
}

fn renamed(mut event: pb::ProposedEvent, name: &str) -> pb::ProposedEvent {
    let Some(Kind::MemberJoined(m)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) else { unreachable!() };
    m.name = name.into();
    event
}

#[tokio::test]
async fn retrying_an_acknowledged_batch_returns_the_original_places_and_writes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = original_batch();
    let original = client.append(request.clone()).await.unwrap().into_inner();
    assert!(!original.already_committed);
    assert_eq!(original.events.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    // The log moves on; in particular the streams the original expected to be new now exist.
    client
        .append(append(vec![member_joined("DE"), export_rule_changed("us-cn-retry", pb::Treatment::Allowed, None)]))
        .await
        .unwrap();
    let log = read_all(&mut client).await;

    for _ in 0..3 {
        let retry = client.append(request.clone()).await.unwrap().into_inner();
        assert!(retry.already_committed);
        assert_eq!(retry.events, original.events);
        assert_eq!(retry.record_time, original.record_time, "a retry answers with the original record time");
        assert_eq!(read_all(&mut client).await, log, "a retry wrote something");
    }
    // Every event of a retry already committed: a part of the original batch is a retry too.
    let part = append(request.events[2..4].to_vec());
    let retry = client.append(part).await.unwrap().into_inner();
    assert!(retry.already_committed);
    assert_eq!(retry.events, original.events[2..4]);
    // The next new event continues after the head.
    let next = client.append(append(vec![member_joined("FR")])).await.unwrap().into_inner();
    assert_eq!(next.events[0].position, 8);
    server.stop().await;
}

#[tokio::test]
async fn a_retry_after_a_restart_returns_the_original_places() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = original_batch();
    let original = client.append(request.clone()).await.unwrap().into_inner();
    let log = read_all(&mut client).await;
    drop(client);

    let server = server.restart().await;
    let mut client = server.client().await;
    let retry = client.append(request.clone()).await.unwrap().into_inner();
    assert!(retry.already_committed);
    assert_eq!(retry.events, original.events);
    assert_eq!(retry.record_time, original.record_time);
    assert_eq!(read_all(&mut client).await, log);
    assert_eq!(head_position(&mut client).await, 5);
    let next = client.append(append(vec![member_joined("FR")])).await.unwrap().into_inner();
    assert_eq!((next.events[0].position, next.already_committed), (6, false));
    server.stop().await;
}

#[tokio::test]
async fn the_same_id_with_other_content_is_already_exists_before_and_after_a_restart() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = member_joined("FR");
    client.append(append(vec![member_joined("JP"), original.clone()])).await.unwrap();

    let mut later = original.clone();
    later.effective_time = Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 });
    let mut other_actor = original.clone();
    other_actor.metadata.as_mut().unwrap().actor = "someone else".into();
    let mut labelled = original.clone();
    labelled.metadata.as_mut().unwrap().labels.insert("illustrative".into(), "true".into());
    let mut other_stream = member_joined("IT");
    other_stream.event_id = original.event_id.clone();
    let variants = [renamed(original.clone(), "French Republic"), later, other_actor, labelled, other_stream];

    let mut server = server;
    for round in ["before restart", "after restart"] {
        for variant in &variants {
            let status = client.append(append(vec![variant.clone()])).await.expect_err("a variant is refused");
            assert_eq!(status.code(), Code::AlreadyExists, "{round}: {status:?}");
            assert_eq!(error_info_metadata(&status)["position"], "2", "{round}");
        }
        assert_eq!(head_position(&mut client).await, 2, "{round}");
        let stored =
            client.get_event(pb::GetEventRequest { event_id: original.event_id.clone() }).await.unwrap().into_inner();
        assert_eq!(
            (stored.data, stored.metadata, stored.position),
            (original.data.clone(), original.metadata.clone(), 2)
        );
        // The identical event is still a retry.
        let retry = client.append(append(vec![original.clone()])).await.unwrap().into_inner();
        assert_eq!((retry.already_committed, retry.events[0].position), (true, 2), "{round}");
        drop(client);
        server = server.restart().await;
        client = server.client().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_racing_its_original_succeeds_with_the_same_places_and_one_copy() {
    const PAIRS: usize = 8;
    const ROUNDS: usize = 6;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut tasks = Vec::new();
    for pair in 0..PAIRS {
        let mut first = LedgerServiceClient::new(server.channel().await);
        let mut second = LedgerServiceClient::new(server.channel().await);
        tasks.push(tokio::spawn(async move {
            let mut requests = Vec::new();
            for round in 0..ROUNDS {
                let rule = format!("twice-{pair}-{round}");
                let request = append_expecting(
                    vec![
                        export_rule_changed(&rule, pb::Treatment::Prohibited, None),
                        export_rule_changed(&rule, pb::Treatment::Allowed, None),
                        export_rule_changed(&format!("twice-{pair}"), pb::Treatment::Allowed, None),
                    ],
                    vec![expect_state(&format!("export-rule-{rule}"), pb::ExpectedState::NoStream)],
                );
                let start = Arc::new(Barrier::new(2));
                let (a, b) = (request.clone(), request.clone());
                let (start_a, start_b) = (start.clone(), start);
                let (one, other) = tokio::join!(
                    async {
                        start_a.wait().await;
                        first.append(a).await
                    },
                    async {
                        start_b.wait().await;
                        second.append(b).await
                    }
                );
                let (one, other) = (one.expect("original").into_inner(), other.expect("retry").into_inner());
                assert_eq!(one.events, other.events, "pair {pair}, round {round}");
                assert_eq!(one.record_time, other.record_time);
                assert_eq!(
                    [one.already_committed, other.already_committed].iter().filter(|c| !**c).count(),
                    1,
                    "exactly one of the two wrote"
                );
                requests.push((request, one.events));
            }
            requests
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks)).await.expect("in time");
    let requests: Vec<_> = all.into_iter().flat_map(|r| r.expect("pair task")).collect();

    let log = read_all(&mut client).await;
    assert_eq!(log.len(), PAIRS * ROUNDS * 3);
    assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=log.len() as u64).collect::<Vec<_>>());
    let mut copies: HashMap<&str, Vec<u64>> = HashMap::new();
    for event in &log {
        copies.entry(event.event_id.as_str()).or_default().push(event.position);
    }
    for (request, appended) in &requests {
        for (event, ack) in request.events.iter().zip(appended) {
            assert_eq!(
                copies.get(event.event_id.as_str()),
                Some(&vec![ack.position]),
                "one copy, at the acknowledged position"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn an_event_without_an_id_gets_a_generated_one_and_is_not_idempotent() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut anonymous = export_rule_changed("anonymous", pb::Treatment::Allowed, None);
    anonymous.event_id = String::new();
    let first = client.append(append(vec![anonymous.clone()])).await.unwrap().into_inner();
    let second = client.append(append(vec![anonymous])).await.unwrap().into_inner();
    assert_eq!((first.events[0].position, second.events[0].position), (1, 2));
    assert!(!second.already_committed);
    for appended in [&first.events[0], &second.events[0]] {
        let generated = uuid::Uuid::try_parse(&appended.event_id).expect("a generated UUID");
        assert_eq!(generated.get_version_num(), 7, "a UUIDv7");
        let stored =
            client.get_event(pb::GetEventRequest { event_id: appended.event_id.clone() }).await.unwrap().into_inner();
        assert_eq!(stored.position, appended.position);
    }
    assert_ne!(first.events[0].event_id, second.events[0].event_id);
    server.stop().await;
}
