//! Subscriptions: catch-up, CaughtUp, live events, filters, slow subscribers, and shutdown with a
//! subscription open.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pb::subscribe_response::Message;
use tokio::sync::Barrier;
use tonic::Streaming;

use crate::support::*;

/// Reads `count` events from `subscription`; any other message fails the test.
async fn events(subscription: &mut Streaming<pb::SubscribeResponse>, count: usize) -> Vec<pb::RecordedEvent> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        match next_message(subscription).await {
            Message::Event(event) => events.push(event),
            other => panic!("expected event {} of {count}, got {other:?}", events.len() + 1),
        }
    }
    events
}

fn positions(events: &[pb::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// Asserts that nothing more arrives for a while.
async fn assert_quiet(subscription: &mut Streaming<pb::SubscribeResponse>) {
    if let Ok(message) = tokio::time::timeout(Duration::from_millis(300), subscription.message()).await {
        panic!("unexpected {message:?}");
    }
}

/// `clients` concurrent clients, each appending `per_client` requests made by `request(client, n)`;
/// returns every acknowledged (event id, position).
async fn burst(
    server: &TestServer,
    clients: usize,
    per_client: usize,
    request: impl Fn(usize, usize) -> pb::AppendRequest + Send + Sync + 'static,
) -> Vec<(String, u64)> {
    let request = Arc::new(request);
    let start = Arc::new(Barrier::new(clients));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = LedgerServiceClient::new(server.channel().await);
        let (request, start) = (request.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut acked = Vec::new();
            for n in 0..per_client {
                let request = request(c, n);
                let response = client.append(request.clone()).await.expect("append").into_inner();
                acked
                    .extend(request.events.iter().zip(&response.events).map(|(e, a)| (e.event_id.clone(), a.position)));
            }
            acked
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("the burst ends in time");
    all.into_iter().flat_map(|r| r.expect("client task")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_started_before_a_burst_sees_every_event_once_in_order_then_live_ones() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 63;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut subscription = client.subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();
    assert_eq!(next_message(&mut subscription).await, Message::CaughtUp(pb::CaughtUp { position: 0 }));

    let reader = tokio::spawn(async move {
        let seen = events(&mut subscription, CLIENTS * PER_CLIENT).await;
        (subscription, seen)
    });
    let acked = burst(&server, CLIENTS, PER_CLIENT, |c, _| {
        append(vec![export_rule_changed(&format!("burst-{c}"), pb::Treatment::Allowed, None)])
    })
    .await;
    let (mut subscription, seen) =
        tokio::time::timeout(Duration::from_secs(30), reader).await.expect("the reader ends").unwrap();

    let total = (CLIENTS * PER_CLIENT) as u64;
    assert_eq!(positions(&seen), (1..=total).collect::<Vec<_>>(), "every event once, in position order");
    let seen_places: HashSet<_> = seen.iter().map(|e| (e.event_id.clone(), e.position)).collect();
    assert_eq!(seen_places, acked.into_iter().collect::<HashSet<_>>());
    assert_eq!(seen, read_all(&mut client).await, "the subscription delivers what ReadAll reads");

    // Live, after the burst; no second CaughtUp.
    let live = member_joined("JP");
    client.append(append(vec![live.clone()])).await.unwrap();
    let next = events(&mut subscription, 1).await;
    assert_eq!((next[0].position, &next[0].event_id), (total + 1, &live.event_id));
    assert_quiet(&mut subscription).await;
    drop(subscription);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_started_during_a_burst_sees_every_event_once_in_order() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 40;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let total = (CLIENTS * PER_CLIENT * 2) as u64;
    let writers = {
        let url = server.url.clone();
        tokio::spawn(async move {
            let start = Arc::new(Barrier::new(CLIENTS));
            let mut tasks = Vec::new();
            for c in 0..CLIENTS {
                let mut client = LedgerServiceClient::connect(url.clone()).await.unwrap();
                let start = start.clone();
                tasks.push(tokio::spawn(async move {
                    start.wait().await;
                    for _ in 0..PER_CLIENT {
                        let rule = format!("during-{c}");
                        let events = vec![
                            export_rule_changed(&rule, pb::Treatment::Allowed, None),
                            export_rule_changed(&rule, pb::Treatment::Prohibited, None),
                        ];
                        client.append(append(events)).await.expect("append");
                    }
                }));
            }
            futures::future::join_all(tasks).await
        })
    };
    // Join in while the writers are busy.
    let mut watch = server.ledger.watch_head();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|h| h.position.0 >= 40)).await.unwrap().unwrap();
    let mut subscription = client.subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();
    let mut seen = Vec::new();
    let mut caught_up = Vec::new();
    while (seen.len() as u64) < total {
        match next_message(&mut subscription).await {
            Message::Event(event) => seen.push(event.position),
            Message::CaughtUp(at) => caught_up.push((seen.len(), at.position)),
        }
    }
    tokio::time::timeout(Duration::from_secs(30), writers).await.expect("writers finish").unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "every event once, in position order");
    assert_eq!(caught_up.len(), 1, "exactly one CaughtUp: {caught_up:?}");
    let (delivered_before, at) = caught_up[0];
    assert_eq!(at, delivered_before as u64, "CaughtUp names the last position delivered before it");
    assert_quiet(&mut subscription).await;
    drop(subscription);
    server.stop().await;
}

/// A subscriber whose catch-up outlasts a stretch of appends: the reader pages through the log
/// (256 events a page) to the head of each page's moment, past the head it started from, and
/// CaughtUp must still cover every event delivered before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_covers_every_event_delivered_before_it_while_appends_go_on() {
    // Not on a page boundary (8,105 = 31 × 256 + 169); appends of 100 events never land on one.
    const LOG: u64 = 8_105;
    const APPEND: usize = 100;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut written = 0;
    while written < LOG {
        let n = (LOG - written).min(1000) as usize;
        client
            .append(append((0..n).map(|_| export_rule_changed("catch-up", pb::Treatment::Allowed, None)).collect()))
            .await
            .unwrap();
        written += n as u64;
    }
    // A small HTTP/2 window, so that the reader task soon waits for this subscriber to read, long
    // before it reaches the head it started from.
    let narrow = tonic::transport::Channel::from_shared(server.url.clone())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut subscription =
        LedgerServiceClient::new(narrow).subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();

    let appending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (mut client, appending) = (server.client().await, appending.clone());
        tokio::spawn(async move {
            while appending.load(std::sync::atomic::Ordering::Relaxed) {
                let events = (0..APPEND).map(|_| export_rule_changed("live", pb::Treatment::Allowed, None)).collect();
                client.append(append(events)).await.expect("append");
            }
        })
    };
    let mut heads = server.ledger.watch_head();
    tokio::time::timeout(Duration::from_secs(30), heads.wait_for(|h| h.position.0 >= LOG + 1000))
        .await
        .expect("the appends go on")
        .unwrap();

    let mut delivered = Vec::new();
    let caught_up = loop {
        match next_message(&mut subscription).await {
            Message::Event(event) => delivered.push(event.position),
            Message::CaughtUp(at) => break at.position,
        }
    };
    appending.store(false, std::sync::atomic::Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), writer).await.expect("the writer stops").unwrap();
    let head = head_position(&mut client).await;

    let last = delivered.len() as u64;
    assert_eq!(delivered, (1..=last).collect::<Vec<_>>(), "every event once, in position order");
    assert!(last >= LOG, "the catch-up stopped at {last}, before the head it started from");
    assert!(caught_up >= last, "CaughtUp({caught_up}) after delivering position {last}");
    // Live events continue right after the CaughtUp position: nothing skipped, nothing twice.
    let live = events(&mut subscription, (head - caught_up) as usize).await;
    assert_eq!(positions(&live), (caught_up + 1..=head).collect::<Vec<_>>());
    assert_quiet(&mut subscription).await;
    drop(subscription);
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_from_a_middle_position_starts_there() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .append(append((0..20).map(|_| export_rule_changed("middle", pb::Treatment::Allowed, None)).collect()))
        .await
        .unwrap();

    for (from, first) in [(8, 8), (1, 1), (20, 20)] {
        let mut subscription = client
            .subscribe(pb::SubscribeRequest { from_position: from, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let caught_up = events(&mut subscription, 21 - first as usize).await;
        assert_eq!(positions(&caught_up), (first..=20).collect::<Vec<_>>(), "from {from}");
        assert_eq!(
            next_message(&mut subscription).await,
            Message::CaughtUp(pb::CaughtUp { position: 20 }),
            "from {from}"
        );
    }
    let mut subscription =
        client.subscribe(pb::SubscribeRequest { from_position: 15, ..Default::default() }).await.unwrap().into_inner();
    events(&mut subscription, 6).await;
    assert_eq!(next_message(&mut subscription).await, Message::CaughtUp(pb::CaughtUp { position: 20 }));
    let live = client.append(append(vec![member_joined("JP")])).await.unwrap().into_inner();
    assert_eq!(positions(&events(&mut subscription, 1).await), [live.events[0].position]);
    assert_eq!(live.events[0].position, 21);
    drop(subscription);
    server.stop().await;
}

#[tokio::test]
async fn a_filtered_subscription_delivers_only_matching_events() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let project = id();
    client
        .append(append(vec![
            member_joined("JP"),                                             // 1
            export_rule_changed("us-cn-a", pb::Treatment::Prohibited, None), // 2
            member_joined("KR"),                                             // 3
            project_identified(&project, "JP", &["KR"]),                     // 4
            export_rule_changed("nl-cn-a", pb::Treatment::Allowed, None),    // 5
            member_role_changed("KR", pb::MemberRole::Guest),                // 6
        ]))
        .await
        .unwrap();
    let subscribe = |prefixes: &[&str], types: &[&str], from_position: u64| pb::SubscribeRequest {
        from_position,
        stream_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
    };
    let cases: Vec<(pb::SubscribeRequest, Vec<u64>, Vec<u64>)> = vec![
        // (request, catch-up positions, live positions among 7..=10)
        (subscribe(&["member-"], &[], 0), vec![1, 3, 6], vec![7, 10]),
        (subscribe(&["export-rule-us-"], &[], 0), vec![2], vec![8]),
        (subscribe(&[], &["export_rule_changed"], 0), vec![2, 5], vec![8, 9]),
        (subscribe(&["member-"], &["member_joined"], 0), vec![1, 3], vec![7]),
        (subscribe(&["member-", "project-"], &[], 3), vec![3, 4, 6], vec![7, 10]),
        (subscribe(&["summit-"], &[], 0), vec![], vec![]),
    ];
    let mut subscriptions = Vec::new();
    for (request, catch_up, live) in cases {
        let mut subscription = client.subscribe(request.clone()).await.unwrap().into_inner();
        assert_eq!(positions(&events(&mut subscription, catch_up.len()).await), catch_up, "{request:?}");
        assert_eq!(
            next_message(&mut subscription).await,
            Message::CaughtUp(pb::CaughtUp { position: 6 }),
            "{request:?}"
        );
        subscriptions.push((request, subscription, live));
    }
    client
        .append(append(vec![
            member_joined("DE"),                                          // 7
            export_rule_changed("us-cn-a", pb::Treatment::Allowed, None), // 8
            export_rule_changed("nl-cn-b", pb::Treatment::Allowed, None), // 9
            member_withdrew("DE"),                                        // 10
        ]))
        .await
        .unwrap();
    for (request, mut subscription, live) in subscriptions {
        let got = events(&mut subscription, live.len()).await;
        assert_eq!(positions(&got), live, "{request:?}");
        for event in &got {
            assert!(
                request.stream_prefixes.is_empty()
                    || request.stream_prefixes.iter().any(|p| event.stream.starts_with(p))
            );
            assert!(request.event_types.is_empty() || request.event_types.contains(&event.event_type));
        }
        assert_quiet(&mut subscription).await;
    }
    server.stop().await;
}

/// A commitment of about 4 KiB on the wire, so that 2,000 of them overflow every buffer between
/// the subscription's reader task and an idle client (the HTTP/2 windows, the subscription's
/// channel).
fn bulky_commitment(member: &str) -> pb::ProposedEvent {
    let mut event = commitment_made(&id(), member);
    if let Some(pb::event_data::Kind::CommitmentMade(c)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) {
        c.description = "x".repeat(3000);
    }
    event.metadata.as_mut().unwrap().source = "s".repeat(1000);
    event
}

const BULK_EVENTS: usize = 2000;

/// Starts a subscription from the start, reads up to its CaughtUp, then appends
/// [`BULK_EVENTS`] bulky events from 4 clients without reading it; the appends must finish.
async fn flood_an_idle_subscriber(server: &TestServer) -> (Streaming<pb::SubscribeResponse>, Vec<(String, u64)>) {
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let mut idle = client.subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();
    assert_eq!(positions(&events(&mut idle, 1).await), [1]);
    assert_eq!(next_message(&mut idle).await, Message::CaughtUp(pb::CaughtUp { position: 1 }));
    let acked =
        burst(server, 4, BULK_EVENTS / 40, |_, _| append((0..10).map(|_| bulky_commitment("JP")).collect())).await;
    assert_eq!(acked.len(), BULK_EVENTS);
    (idle, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_does_not_block_writers_and_later_gets_every_event() {
    let server = TestServer::start().await;
    let (mut idle, acked) = flood_an_idle_subscriber(&server).await;
    let mut client = server.client().await;
    assert_eq!(head_position(&mut client).await, 1 + BULK_EVENTS as u64);

    let got = events(&mut idle, BULK_EVENTS).await;
    assert_eq!(positions(&got), (2..=1 + BULK_EVENTS as u64).collect::<Vec<_>>());
    let got_places: HashSet<_> = got.iter().map(|e| (e.event_id.clone(), e.position)).collect();
    assert_eq!(got_places, acked.into_iter().collect::<HashSet<_>>());
    // And it is live again.
    let live = client.append(append(vec![member_joined("KR")])).await.unwrap().into_inner();
    assert_eq!(positions(&events(&mut idle, 1).await), [live.events[0].position]);
    drop(idle);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_cleanly_while_a_live_subscription_is_open() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let mut subscription = client.subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();
    assert_eq!(positions(&events(&mut subscription, 1).await), [1]);
    assert_eq!(next_message(&mut subscription).await, Message::CaughtUp(pb::CaughtUp { position: 1 }));

    server.stop().await; // within its 10 s timeout, or the test fails
    let end =
        tokio::time::timeout(Duration::from_secs(5), subscription.message()).await.expect("the subscription ends");
    assert_eq!(end.expect_err("the subscription ends with a status, not OK").code(), tonic::Code::Unavailable);
}

/// Appends go on while the server stops: a live subscriber receives every event acknowledged
/// before the stop — and only those — and then UNAVAILABLE, never a silent end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_a_subscriber_receives_every_acknowledged_event_then_unavailable() {
    const WRITERS: usize = 4;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut subscription = client.subscribe(pb::SubscribeRequest::default()).await.unwrap().into_inner();
    assert_eq!(next_message(&mut subscription).await, Message::CaughtUp(pb::CaughtUp { position: 0 }));
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), subscription.message())
                .await
                .expect("the subscription ends within 30 s of the last event");
            match message {
                Ok(Some(pb::SubscribeResponse { message: Some(Message::Event(event)) })) => {
                    seen.push((event.event_id, event.position))
                }
                Ok(Some(other)) => panic!("unexpected {other:?}"),
                Ok(None) => return (seen, None),
                Err(status) => return (seen, Some(status)),
            }
        }
    });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut client = LedgerServiceClient::new(server.channel().await);
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            loop {
                let events: Vec<_> =
                    (0..5).map(|_| export_rule_changed(&format!("stop-{w}"), pb::Treatment::Allowed, None)).collect();
                match client.append(append(events.clone())).await {
                    Ok(response) => acked.extend(
                        events.into_iter().zip(response.into_inner().events).map(|(e, a)| (e.event_id, a.position)),
                    ),
                    Err(_) => return acked,
                }
            }
        }));
    }
    let mut heads = server.ledger.watch_head();
    tokio::time::timeout(Duration::from_secs(30), heads.wait_for(|h| h.position.0 >= 200)).await.unwrap().unwrap();
    server.stop().await;

    let mut acked = HashSet::new();
    for writer in writers {
        acked.extend(tokio::time::timeout(Duration::from_secs(30), writer).await.expect("writers stop").unwrap());
    }
    let (seen, end) = tokio::time::timeout(Duration::from_secs(30), reader).await.expect("the reader ends").unwrap();
    assert_eq!(positions_of(&seen), (1..=seen.len() as u64).collect::<Vec<_>>(), "every event once, in order");
    assert_eq!(seen.len(), acked.len(), "delivered {} of {} acknowledged events", seen.len(), acked.len());
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), acked);
    let end = end.expect("the subscription ends with a status, not OK");
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
}

fn positions_of(places: &[(String, u64)]) -> Vec<u64> {
    places.iter().map(|(_, position)| *position).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_cleanly_while_a_subscriber_that_never_reads_is_behind() {
    let server = TestServer::start().await;
    let (mut idle, _) = flood_an_idle_subscriber(&server).await;
    // The idle subscriber holds the client open and never reads: shutdown must not wait for it.
    server.stop().await; // within its 10 s timeout, or the test fails
    // Given up, it still does not end as if the log had ended: what was sent, then UNAVAILABLE.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), idle.message()).await.expect("the subscription ends") {
            Ok(Some(pb::SubscribeResponse { message: Some(Message::Event(_)) })) => {}
            other => break other,
        }
    };
    assert_eq!(end.expect_err("the subscription ends with a status, not OK").code(), tonic::Code::Unavailable);
}
