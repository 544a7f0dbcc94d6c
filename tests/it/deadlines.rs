//! Deadlines are honoured: an append whose deadline passes (or whose client goes away) is
//! either committed whole or not at all, and the client can find out which by its event ids,
//! also after a restart.

use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use tonic::Code;

use crate::support::*;

const REQUESTS: usize = 300;
const EVENTS_PER_REQUEST: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_past_its_deadline_is_committed_whole_or_not_at_all() {
    let server = TestServer::start().await;
    let mut setup = server.client().await;
    setup.append(append(vec![member_joined("JP")])).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let mut client = server.client().await;
        let events: Vec<_> = (0..EVENTS_PER_REQUEST).map(|_| commitment_made(&id(), "JP")).collect();
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        // Deadlines from 0 to 4 ms: most pass while the request waits for its commit group.
        let mut request = tonic::Request::new(append(events));
        request.set_timeout(Duration::from_micros((i % 5) as u64 * 1000 + 1));
        tasks.push(tokio::spawn(async move { (ids, client.append(request).await.map(|r| r.into_inner())) }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(tokio::time::timeout(Duration::from_secs(30), task).await.expect("answered").unwrap());
    }
    let late = outcomes.iter().filter(|(_, result)| result.is_err()).count();
    for (_, result) in &outcomes {
        if let Err(status) = result {
            assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
        }
    }
    assert!(late > REQUESTS / 10, "only {late} of {REQUESTS} appends passed their deadline: the test tests little");
    drop(setup);
    let server = server.restart().await;
    let mut client = server.client().await;
    let (mut whole, mut absent) = (0, 0);
    for (ids, result) in &outcomes {
        let mut found = Vec::new();
        for id in ids {
            match client.get_event(pb::GetEventRequest { event_id: id.clone() }).await {
                Ok(event) => found.push(event.into_inner().position),
                Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
            }
        }
        match (found.len(), result) {
            (0, Err(_)) => absent += 1,
            (n, Ok(response)) if n == ids.len() => {
                let acknowledged: Vec<u64> = response.events.iter().map(|e| e.position).collect();
                assert_eq!(found, acknowledged, "an acknowledged append reads back where it was acknowledged");
            }
            (n, Err(_)) if n == ids.len() => {
                assert!(found.windows(2).all(|w| w[1] == w[0] + 1), "a committed request's events are consecutive");
                whole += 1;
            }
            (n, _) => panic!("a request of {} events is {n} events in the log: {result:?}", ids.len()),
        }
    }
    eprintln!(
        "{REQUESTS} appends: {late} past their deadline, of which {whole} committed whole and {absent} not at all"
    );
    server.stop().await;
}
