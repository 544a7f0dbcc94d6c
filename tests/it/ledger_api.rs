//! The happy path of every `LedgerService` RPC, over a real server: Append, ReadStream, ReadAll,
//! GetEvent, Subscribe, expectations that pass, and the domain's ordinary flows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pb::subscribe_response::Message;
use tonic::transport::Channel;

use crate::support::*;

type Client = LedgerServiceClient<Channel>;

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn positions(events: &[pb::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn revisions(events: &[pb::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

/// One ReadStream page: (revisions, stream_revision, next_revision).
async fn stream_page(
    client: &mut Client,
    stream: &str,
    direction: pb::ReadDirection,
    from_revision: Option<u64>,
    limit: u32,
) -> (Vec<u64>, u64, Option<u64>) {
    let page = client
        .read_stream(pb::ReadStreamRequest { stream: stream.into(), direction: direction as i32, from_revision, limit })
        .await
        .expect("read_stream")
        .into_inner();
    (revisions(&page.events), page.stream_revision, page.next_revision)
}

/// Pages through ReadStream with `limit`, returning every page's revisions.
async fn stream_pages(client: &mut Client, stream: &str, direction: pb::ReadDirection, limit: u32) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut from = None;
    loop {
        let (page, _, next) = stream_page(client, stream, direction, from, limit).await;
        pages.push(page);
        match next {
            Some(next) => from = Some(next),
            None => return pages,
        }
    }
}

/// Pages through ReadAll with `request` (page_token overwritten), returning every page.
async fn all_pages(client: &mut Client, request: pb::ReadAllRequest) -> Vec<pb::ReadAllResponse> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .read_all(pb::ReadAllRequest { page_token: token.clone(), ..request.clone() })
            .await
            .expect("read_all")
            .into_inner();
        token = page.next_page_token.clone();
        pages.push(page);
        if token.is_empty() {
            return pages;
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
}

fn rule(n: usize) -> pb::ProposedEvent {
    let treatment = [pb::Treatment::Prohibited, pb::Treatment::LicenseRequired, pb::Treatment::Allowed][n % 3];
    export_rule_changed("us-cn-api", treatment, None)
}

#[tokio::test]
async fn append_of_one_event_returns_its_place_and_record_time() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let joined = member_joined("JP");
    let before = unix_now();
    let response = client.append(append(vec![joined.clone()])).await.unwrap().into_inner();
    let after = unix_now();

    assert_eq!(
        response.events,
        [pb::AppendedEvent { event_id: joined.event_id.clone(), stream: "member-JP".into(), revision: 0, position: 1 }]
    );
    assert!(!response.already_committed);
    let record_time = response.record_time.expect("record_time is set");
    assert!((before - 1..=after + 1).contains(&record_time.seconds), "{record_time:?} not within [{before}, {after}]");

    let stored =
        client.get_event(pb::GetEventRequest { event_id: joined.event_id.clone() }).await.unwrap().into_inner();
    assert_eq!(stored.record_time, Some(record_time));
    assert_eq!(stored.effective_time, Some(record_time), "no effective time proposed: the record time");
    assert_eq!(stored.data, joined.data);
    assert_eq!(stored.metadata, joined.metadata);
    assert_eq!(stored.event_type, "member_joined");
    server.stop().await;
}

#[tokio::test]
async fn a_multi_stream_batch_gets_dense_positions_in_request_order_and_revisions_per_stream() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();

    let project = id();
    let commitment = id();
    let batch = vec![
        member_joined("KR"),
        project_identified(&project, "JP", &["KR"]),
        export_rule_changed("us-cn-batch", pb::Treatment::Prohibited, None),
        commitment_made(&commitment, "KR"),
        export_rule_changed("us-cn-batch", pb::Treatment::LicenseRequired, None),
        project_status_changed(&project, pb::ProjectStatus::Approved),
        member_role_changed("JP", pb::MemberRole::Guest),
    ];
    let response = client.append(append(batch.clone())).await.unwrap().into_inner();
    let expected = [
        ("member-KR".to_owned(), 0, 2),
        (format!("project-{project}"), 0, 3),
        ("export-rule-us-cn-batch".to_owned(), 0, 4),
        (format!("commitment-{commitment}"), 0, 5),
        ("export-rule-us-cn-batch".to_owned(), 1, 6),
        (format!("project-{project}"), 1, 7),
        ("member-JP".to_owned(), 1, 8),
    ];
    let got: Vec<_> = response.events.iter().map(|e| (e.stream.clone(), e.revision, e.position)).collect();
    assert_eq!(got, expected);
    let ids: Vec<_> = response.events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids, batch.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>());

    // The log holds them in that order, all with the batch's one record time.
    let log = read_all(&mut client).await;
    assert_eq!(positions(&log), (1..=8).collect::<Vec<_>>());
    assert_eq!(log[1..].iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(), ids);
    assert!(log[1..].iter().all(|e| e.record_time == response.record_time));
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos)).expect("record_time");
    assert!(time(&log[0].record_time) <= time(&response.record_time), "record times never go back");

    // The next append continues both counters.
    let next = client
        .append(append(vec![export_rule_changed("us-cn-batch", pb::Treatment::Allowed, None)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((next.events[0].revision, next.events[0].position), (2, 9));
    server.stop().await;
}

#[tokio::test]
async fn read_stream_forwards_backwards_from_a_revision_and_by_pages() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Interleave another stream, so that positions differ from revisions.
    let mut batch = Vec::new();
    for n in 0..10 {
        batch.push(rule(n));
        batch.push(export_rule_changed(&format!("other-{n}"), pb::Treatment::Allowed, None));
    }
    let acked = client.append(append(batch)).await.unwrap().into_inner();
    let stream = "export-rule-us-cn-api";
    use pb::ReadDirection::{Backward, Forward};

    let whole = client
        .read_stream(pb::ReadStreamRequest { stream: stream.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revisions(&whole.events), (0..10).collect::<Vec<_>>());
    assert_eq!(positions(&whole.events), (0..10).map(|n| 1 + 2 * n).collect::<Vec<_>>());
    assert_eq!(whole.stream_revision, 9);
    assert_eq!(whole.next_revision, None);
    for (event, appended) in whole.events.iter().zip(acked.events.iter().step_by(2)) {
        assert_eq!(
            (&event.event_id, event.position, event.revision),
            (&appended.event_id, appended.position, appended.revision)
        );
        assert_eq!(event.stream, stream);
    }

    assert_eq!(stream_page(&mut client, stream, Backward, None, 0).await, ((0..10).rev().collect(), 9, None));
    assert_eq!(stream_page(&mut client, stream, Forward, Some(4), 0).await, ((4..10).collect(), 9, None));
    assert_eq!(stream_page(&mut client, stream, Backward, Some(4), 0).await, ((0..=4).rev().collect(), 9, None));
    assert_eq!(stream_page(&mut client, stream, Forward, Some(9), 0).await, (vec![9], 9, None));
    assert_eq!(stream_page(&mut client, stream, Forward, Some(10), 0).await, (vec![], 9, None));
    assert_eq!(stream_page(&mut client, stream, Backward, Some(50), 0).await, ((0..10).rev().collect(), 9, None));
    assert_eq!(stream_page(&mut client, stream, Forward, Some(2), 3).await, (vec![2, 3, 4], 9, Some(5)));
    assert_eq!(stream_page(&mut client, stream, Backward, Some(2), 3).await, (vec![2, 1, 0], 9, None));

    assert_eq!(
        stream_pages(&mut client, stream, Forward, 3).await,
        [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]
    );
    assert_eq!(stream_pages(&mut client, stream, Forward, 5).await, [vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9]]);
    assert_eq!(stream_pages(&mut client, stream, Backward, 4).await, [vec![9, 8, 7, 6], vec![5, 4, 3, 2], vec![1, 0]]);
    assert_eq!(stream_pages(&mut client, stream, Backward, 5).await, [vec![9, 8, 7, 6, 5], vec![4, 3, 2, 1, 0]]);
    assert_eq!(stream_pages(&mut client, stream, Forward, 10).await, [(0..10).collect::<Vec<_>>()]);

    // A one-event stream.
    assert_eq!(stream_page(&mut client, "export-rule-other-3", Forward, None, 0).await, (vec![0], 0, None));
    assert_eq!(stream_page(&mut client, "export-rule-other-3", Backward, None, 1).await, (vec![0], 0, None));
    server.stop().await;
}

#[tokio::test]
async fn reads_of_an_empty_ledger_are_empty() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for direction in [pb::ReadDirection::Forward, pb::ReadDirection::Backward] {
        let page = client
            .read_all(pb::ReadAllRequest { direction: direction as i32, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page, pb::ReadAllResponse { events: vec![], next_page_token: String::new(), head_position: 0 });
    }
    let mut subscription = client.subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();
    assert_eq!(next_message(&mut subscription).await, Message::CaughtUp(pb::CaughtUp { position: 0 }));
    drop(subscription);
    server.stop().await;
}

#[tokio::test]
async fn read_all_from_a_position_backwards_and_its_head() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append((0..20).map(rule).collect())).await.unwrap();
    use pb::ReadDirection::{Backward, Forward};
    let read = |from_position: u64, direction: pb::ReadDirection, page_size: u32| pb::ReadAllRequest {
        from_position,
        direction: direction as i32,
        page_size,
        ..Default::default()
    };

    let page = client.read_all(read(5, Forward, 3)).await.unwrap().into_inner();
    assert_eq!((positions(&page.events), page.head_position), (vec![5, 6, 7], 20));
    assert!(!page.next_page_token.is_empty());
    let next = client
        .read_all(pb::ReadAllRequest { page_token: page.next_page_token, ..read(0, Forward, 3) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(positions(&next.events), [8, 9, 10]);

    let page = client.read_all(read(0, Backward, 3)).await.unwrap().into_inner();
    assert_eq!((positions(&page.events), page.head_position), (vec![20, 19, 18], 20));
    let page = client.read_all(read(5, Backward, 3)).await.unwrap().into_inner();
    assert_eq!(positions(&page.events), [5, 4, 3]);
    let page = client.read_all(read(2, Backward, 3)).await.unwrap().into_inner();
    assert_eq!((positions(&page.events), page.next_page_token.as_str()), (vec![2, 1], ""));
    let page = client.read_all(read(20, Forward, 3)).await.unwrap().into_inner();
    assert_eq!((positions(&page.events), page.next_page_token.as_str()), (vec![20], ""));
    let page = client.read_all(read(21, Forward, 3)).await.unwrap().into_inner();
    assert_eq!((positions(&page.events), page.next_page_token.as_str(), page.head_position), (vec![], "", 20));
    let page = client.read_all(read(0, Forward, 0)).await.unwrap().into_inner();
    assert_eq!((positions(&page.events), page.next_page_token.as_str()), ((1..=20).collect(), ""));
    let page = client.read_all(read(1, Forward, 20)).await.unwrap().into_inner();
    assert_eq!(
        (page.events.len(), page.next_page_token.as_str()),
        (20, ""),
        "a page that ends at the head has no token"
    );
    server.stop().await;
}

#[tokio::test]
async fn read_all_pages_of_seven_return_each_of_250_events_exactly_once_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut expected_ids = Vec::new();
    for chunk in 0..5 {
        let batch: Vec<_> = (0..50)
            .map(|n| export_rule_changed(&format!("rule-{}", (chunk * 50 + n) % 17), pb::Treatment::Allowed, None))
            .collect();
        expected_ids.extend(batch.iter().map(|e| e.event_id.clone()));
        client.append(append(batch)).await.unwrap();
    }

    let pages = all_pages(&mut client, pb::ReadAllRequest { page_size: 7, ..Default::default() }).await;
    assert_eq!(pages.len(), 36, "250 = 35 * 7 + 5");
    assert!(pages[..35].iter().all(|p| p.events.len() == 7));
    assert_eq!(pages[35].events.len(), 5);
    assert!(pages.iter().all(|p| p.head_position == 250));
    let events: Vec<_> = pages.into_iter().flat_map(|p| p.events).collect();
    assert_eq!(positions(&events), (1..=250).collect::<Vec<_>>());
    assert_eq!(events.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(), expected_ids);

    let backward =
        pb::ReadAllRequest { page_size: 7, direction: pb::ReadDirection::Backward as i32, ..Default::default() };
    let pages = all_pages(&mut client, backward).await;
    assert_eq!(pages.len(), 36);
    let events: Vec<_> = pages.into_iter().flat_map(|p| p.events).collect();
    assert_eq!(positions(&events), (1..=250).rev().collect::<Vec<_>>());

    let default_page = client.read_all(pb::ReadAllRequest::default()).await.unwrap().into_inner();
    assert_eq!(positions(&default_page.events), (1..=100).collect::<Vec<_>>(), "page_size 0 is the default of 100");
    server.stop().await;
}

#[tokio::test]
async fn read_all_filters_by_stream_prefix_and_event_type() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let project = id();
    let commitment = id();
    let batch = vec![
        member_joined("JP"),                                                  // 1
        export_rule_changed("us-cn-a", pb::Treatment::Prohibited, None),      // 2
        member_joined("KR"),                                                  // 3
        project_identified(&project, "JP", &["KR"]),                          // 4
        export_rule_changed("nl-cn-a", pb::Treatment::LicenseRequired, None), // 5
        commitment_made(&commitment, "KR"),                                   // 6
        export_rule_changed("us-cn-a", pb::Treatment::Allowed, None),         // 7
        member_role_changed("KR", pb::MemberRole::Guest),                     // 8
        project_status_changed(&project, pb::ProjectStatus::Approved),        // 9
        summit_convened("2025-12-12", "JP", &["KR"]),                         // 10
    ];
    client.append(append(batch)).await.unwrap();
    let filtered = |prefixes: &[&str], types: &[&str], page_size: u32| pb::ReadAllRequest {
        page_size,
        stream_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    let cases: Vec<(Vec<&str>, Vec<&str>, Vec<u64>)> = vec![
        (vec!["member-"], vec![], vec![1, 3, 8]),
        (vec!["export-rule-us-"], vec![], vec![2, 7]),
        (vec!["export-rule-"], vec![], vec![2, 5, 7]),
        (vec!["member-KR", "summit-"], vec![], vec![3, 8, 10]),
        (vec![], vec!["member_joined"], vec![1, 3]),
        (vec![], vec!["project_identified", "commitment_made"], vec![4, 6]),
        (vec!["member-"], vec!["member_role_changed"], vec![8]),
        (vec!["project-"], vec!["member_joined"], vec![]),
        (vec!["commitment-"], vec![], vec![6]),
    ];
    for (prefixes, types, expected) in cases {
        for page_size in [1, 2, 1000] {
            let pages = all_pages(&mut client, filtered(&prefixes, &types, page_size)).await;
            assert!(pages.iter().all(|p| p.head_position == 10 && p.events.len() <= page_size as usize));
            let events: Vec<_> = pages.into_iter().flat_map(|p| p.events).collect();
            assert_eq!(positions(&events), expected, "prefixes {prefixes:?}, types {types:?}, page size {page_size}");
            for event in &events {
                assert!(prefixes.is_empty() || prefixes.iter().any(|p| event.stream.starts_with(p)));
                assert!(types.is_empty() || types.contains(&event.event_type.as_str()));
            }
        }
    }
    // Backwards, filtered.
    let backward =
        pb::ReadAllRequest { direction: pb::ReadDirection::Backward as i32, ..filtered(&["member-"], &[], 2) };
    let events: Vec<_> = all_pages(&mut client, backward).await.into_iter().flat_map(|p| p.events).collect();
    assert_eq!(positions(&events), [8, 3, 1]);
    server.stop().await;
}

#[tokio::test]
async fn get_event_returns_what_read_all_returns_and_what_was_proposed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut detailed = export_rule_changed("us-cn-detail", pb::Treatment::AllowedWithLevy, Some(2500));
    detailed.effective_time = Some(prost_types::Timestamp { seconds: 1_765_152_000, nanos: 123_456_789 });
    detailed.metadata = Some(pb::EventMetadata {
        actor: "secretariat".into(),
        source: "Benzinga, 2025-12-14".into(),
        correlation_id: "corr-1".into(),
        causation_id: "cause-1".into(),
        labels: [("illustrative".to_owned(), "false".to_owned()), ("a.b-c_d".to_owned(), "é ✓".to_owned())].into(),
        signature: None,
    });
    let mut bare = member_joined("JP");
    bare.metadata = None;
    let project = id();
    let with_lists = project_identified(&project, "JP", &[]);
    let batch = vec![bare.clone(), detailed.clone(), with_lists.clone()];
    let acked = client.append(append(batch.clone())).await.unwrap().into_inner();

    let log = read_all(&mut client).await;
    assert_eq!(log.len(), 3);
    for ((proposed, appended), logged) in batch.iter().zip(&acked.events).zip(&log) {
        let got =
            client.get_event(pb::GetEventRequest { event_id: proposed.event_id.clone() }).await.unwrap().into_inner();
        assert_eq!(&got, logged);
        assert_eq!((got.position, got.revision, &got.stream), (appended.position, appended.revision, &appended.stream));
        assert_eq!(got.event_id, proposed.event_id);
        assert_eq!(got.data, proposed.data);
        assert_eq!(got.record_time, acked.record_time);
    }
    assert_eq!(log[0].metadata, Some(pb::EventMetadata::default()), "no metadata reads back as empty metadata");
    assert_eq!(log[0].effective_time, acked.record_time);
    assert_eq!(log[1].metadata, detailed.metadata);
    assert_eq!(log[1].effective_time, detailed.effective_time, "a proposed effective time is kept (bitemporal)");
    assert_eq!(log[1].event_type, "export_rule_changed");
    assert_eq!(log[2].event_type, "project_identified");
    server.stop().await;
}

#[tokio::test]
async fn subscribe_catches_up_then_says_caught_up_then_follows_live() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first: Vec<_> = (0..5).map(rule).collect();
    client.append(append(first.clone())).await.unwrap();

    let mut subscription = client.subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();
    for (n, proposed) in first.iter().enumerate() {
        match next_message(&mut subscription).await {
            Message::Event(e) => assert_eq!((e.position, &e.event_id), (n as u64 + 1, &proposed.event_id)),
            other => panic!("expected event {}, got {other:?}", n + 1),
        }
    }
    assert_eq!(next_message(&mut subscription).await, Message::CaughtUp(pb::CaughtUp { position: 5 }));

    let live = [member_joined("LA"), export_rule_changed("live", pb::Treatment::Allowed, None), rule(9)];
    client.append(append(live[..1].to_vec())).await.unwrap();
    client.append(append(live[1..].to_vec())).await.unwrap();
    for (n, proposed) in live.iter().enumerate() {
        match next_message(&mut subscription).await {
            Message::Event(e) => {
                assert_eq!((e.position, &e.event_id), (n as u64 + 6, &proposed.event_id));
                assert_eq!(
                    e,
                    client.get_event(pb::GetEventRequest { event_id: e.event_id.clone() }).await.unwrap().into_inner()
                );
            }
            other => panic!("expected live event {}, got {other:?}", n + 6),
        }
    }
    // Nothing more, and no second CaughtUp.
    assert!(tokio::time::timeout(Duration::from_millis(200), subscription.message()).await.is_err());
    drop(subscription);
    server.stop().await;
}

#[tokio::test]
async fn expectations_any_no_stream_exists_and_exact_pass_when_they_hold() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let stream = "export-rule-expect";
    let change = || export_rule_changed("expect", pb::Treatment::Prohibited, None);
    let cases = [
        (expect_state(stream, pb::ExpectedState::NoStream), 0),
        (expect_state(stream, pb::ExpectedState::Any), 1),
        (expect_state(stream, pb::ExpectedState::Exists), 2),
        (expect_revision(stream, 2), 3),
        (pb::StreamExpectation { stream: stream.into(), expected: None }, 4),
        (expect_revision(stream, 4), 5),
    ];
    for (expectation, revision) in cases {
        let response = client.append(append_expecting(vec![change()], vec![expectation.clone()])).await;
        let response = response.unwrap_or_else(|s| panic!("{expectation:?}: {s:?}")).into_inner();
        assert_eq!(
            (response.events[0].revision, response.events[0].position),
            (revision, revision + 1),
            "{expectation:?}"
        );
    }
    // A batch with two events on the stream: the expectation is about the state before the batch.
    let response = client
        .append(append_expecting(vec![change(), change()], vec![expect_revision(stream, 5)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.events.iter().map(|e| e.revision).collect::<Vec<_>>(), [6, 7]);
    // ANY on a new stream.
    let response = client
        .append(append_expecting(vec![member_joined("JP")], vec![expect_state("member-JP", pb::ExpectedState::Any)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.events[0].revision, 0);
    server.stop().await;
}

#[tokio::test]
async fn an_expectation_on_a_stream_outside_the_batch_is_a_pure_precondition() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();

    let passing = append_expecting(
        vec![member_joined("KR")],
        vec![expect_revision("member-JP", 0), expect_state("member-US", pb::ExpectedState::NoStream)],
    );
    let response = client.append(passing).await.unwrap().into_inner();
    assert_eq!((response.events[0].stream.as_str(), response.events[0].position), ("member-KR", 2));
    // The precondition stream got no event.
    let jp = read_stream_all(&mut client, "member-JP").await.unwrap();
    assert_eq!(revisions(&jp), [0]);
    assert_eq!(read_stream_all(&mut client, "member-US").await.unwrap_err().code(), tonic::Code::NotFound);

    // And it is checked: a failing precondition stops the append.
    client.append(append(vec![member_role_changed("JP", pb::MemberRole::Guest)])).await.unwrap();
    let failing = append_expecting(vec![member_joined("DE")], vec![expect_revision("member-JP", 0)]);
    let status = client.append(failing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(error_info_metadata(&status)["actual_revision"], "1");
    assert_eq!(read_stream_all(&mut client, "member-DE").await.unwrap_err().code(), tonic::Code::NotFound);
    assert_eq!(head_position(&mut client).await, 3);
    server.stop().await;
}

#[tokio::test]
async fn members_join_and_a_project_with_host_and_partners_moves_forward() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .append(append(vec![member_joined("JP"), member_joined("KR"), member_joined_as("AE", pb::MemberRole::Guest)]))
        .await
        .unwrap();
    let project = id();
    let stream = format!("project-{project}");
    client.append(append(vec![project_identified(&project, "JP", &["KR", "AE"])])).await.unwrap();
    use pb::ProjectStatus::{Approved, Cancelled, Completed, UnderWay};
    for status in [Approved, UnderWay, Completed] {
        client.append(append(vec![project_status_changed(&project, status)])).await.unwrap();
    }
    let events = read_stream_all(&mut client, &stream).await.unwrap();
    assert_eq!(revisions(&events), [0, 1, 2, 3]);
    let statuses: Vec<_> = events[1..]
        .iter()
        .map(|e| match e.data.as_ref().and_then(|d| d.kind.as_ref()) {
            Some(pb::event_data::Kind::ProjectStatusChanged(c)) => c.status,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(statuses, [Approved as i32, UnderWay as i32, Completed as i32]);
    match events[0].data.as_ref().and_then(|d| d.kind.as_ref()) {
        Some(pb::event_data::Kind::ProjectIdentified(p)) => {
            assert_eq!((p.host.as_str(), p.partners.clone()), ("JP", vec!["KR".into(), "AE".into()]))
        }
        other => panic!("unexpected {other:?}"),
    }

    // Skipping forward is allowed, and so is cancelling an unfinished project.
    let other = id();
    client.append(append(vec![project_identified(&other, "KR", &[])])).await.unwrap();
    client.append(append(vec![project_status_changed(&other, UnderWay)])).await.unwrap();
    let response = client.append(append(vec![project_status_changed(&other, Cancelled)])).await.unwrap().into_inner();
    assert_eq!((response.events[0].revision, response.events[0].position), (2, 10));
    server.stop().await;
}

#[tokio::test]
async fn a_commitment_is_made_then_fulfilled() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let commitment = id();
    let stream = format!("commitment-{commitment}");
    client.append(append(vec![member_joined("US"), commitment_made(&commitment, "US")])).await.unwrap();
    let response = client.append(append(vec![commitment_fulfilled(&commitment)])).await.unwrap().into_inner();
    assert_eq!(
        (response.events[0].stream.as_str(), response.events[0].revision, response.events[0].position),
        (stream.as_str(), 1, 3)
    );
    let events = read_stream_all(&mut client, &stream).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["commitment_made", "commitment_fulfilled"]
    );

    // Another commitment, withdrawn.
    let withdrawn = id();
    client.append(append(vec![commitment_made(&withdrawn, "US"), commitment_withdrawn(&withdrawn)])).await.unwrap();
    let events = read_stream_all(&mut client, &format!("commitment-{withdrawn}")).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["commitment_made", "commitment_withdrawn"]
    );
    server.stop().await;
}

#[tokio::test]
async fn an_export_rule_changes_several_times() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    use pb::Treatment::{Allowed, AllowedWithLevy, LicenseRequired, Prohibited};
    let changes = [
        (Prohibited, None),
        (LicenseRequired, None),
        (AllowedWithLevy, Some(2500)),
        (AllowedWithLevy, Some(0)),
        (Allowed, None),
    ];
    for (n, (treatment, levy)) in changes.iter().enumerate() {
        let mut change = export_rule_changed("us-cn-nvidia-h200", *treatment, *levy);
        if let Some(pb::event_data::Kind::ExportRuleChanged(c)) = change.data.as_mut().and_then(|d| d.kind.as_mut()) {
            c.effective_from = format!("2025-12-{:02}", 8 + n);
        }
        let response = client.append(append(vec![change])).await.unwrap().into_inner();
        assert_eq!(response.events[0].revision, n as u64);
    }
    let events = read_stream_all(&mut client, "export-rule-us-cn-nvidia-h200").await.unwrap();
    let got: Vec<_> = events
        .iter()
        .map(|e| match e.data.as_ref().and_then(|d| d.kind.as_ref()) {
            Some(pb::event_data::Kind::ExportRuleChanged(c)) => (c.treatment, c.levy_bps, c.effective_from.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: Vec<_> =
        changes.iter().enumerate().map(|(n, (t, l))| (*t as i32, *l, format!("2025-12-{:02}", 8 + n))).collect();
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_summit_is_convened_by_members_and_guests() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .append(append(vec![member_joined("US"), member_joined("JP"), member_joined_as("NL", pb::MemberRole::Guest)]))
        .await
        .unwrap();
    let summit = summit_convened("2025-12-12", "US", &["JP", "NL"]);
    let response = client.append(append(vec![summit.clone()])).await.unwrap().into_inner();
    assert_eq!(
        (response.events[0].stream.as_str(), response.events[0].revision, response.events[0].position),
        ("summit-2025-12-12", 0, 4)
    );
    let events = read_stream_all(&mut client, "summit-2025-12-12").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, summit.data);
    assert_eq!(events[0].metadata, summit.metadata);
    server.stop().await;
}
