//! A record rewritten on disk (without re-hashing the chain) is never served as good: the
//! server answers DATA_LOSS for it, reports NOT_SERVING, and refuses writes.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use pax_ledger::proto::v1 as pb;

use crate::support::*;

/// Enough events that the tampered one lies below the tail that opening re-checks.
const EVENTS: u64 = 1200;
const TAMPERED: u64 = 5;

fn code(i: u64) -> String {
    let letter = |n: u64| (b'A' + (n % 26) as u8) as char;
    format!("T{}{}{}", letter(i), letter(i / 26), letter(i / 676))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_record_answers_data_loss_and_halts_writes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for batch in 0..EVENTS / 100 {
        let events = (0..100).map(|i| member_joined(&code(batch * 100 + i))).collect();
        let response = client.append(append(events)).await.unwrap().into_inner();
        ids.extend(response.events.into_iter().map(|e| e.event_id));
    }
    drop(client);
    let data = server.data.clone();
    let dir = server.stop().await;

    // Rewrite one byte of the member name at position TAMPERED, leaving its hash as it was.
    {
        let db = open_sled(&data);
        let (key, value) = db
            .range(
                b"L".to_vec()..={
                    let mut k = b"L".to_vec();
                    k.extend_from_slice(&TAMPERED.to_be_bytes());
                    k
                },
            )
            .next_back()
            .unwrap()
            .unwrap();
        let mut chunk = value.to_vec();
        let name = format!("Participant {}", code(TAMPERED - 1));
        let at = chunk.windows(name.len()).position(|w| w == name.as_bytes()).expect("the name in its chunk");
        chunk[at] = b'Q';
        db.insert(key, chunk).unwrap();
        db.flush().unwrap();
    }

    let server = TestServer::start_in(&data).await;
    // The live verification finds it, at its position.
    let verdict = server.ledger.verify_live(100, |_, _| {}).unwrap();
    let (at, reason) = verdict.failure.clone().expect("a failure");
    assert_eq!((at, verdict.position), (TAMPERED, TAMPERED - 1), "{verdict:?}");
    assert!(reason.contains("chain hash"), "{verdict:?}");
    let mut client = server.client().await;
    let tampered = client
        .get_event(pb::GetEventRequest { event_id: ids[TAMPERED as usize - 1].clone() })
        .await
        .expect_err("a rewritten record is not served");
    assert_eq!(tampered.code(), tonic::Code::DataLoss, "{tampered:?}");
    assert!(tampered.message().contains(&format!("position {TAMPERED}")), "{tampered:?}");
    let scan = client.read_all(pb::ReadAllRequest { page_size: 1000, ..Default::default() }).await.unwrap_err();
    assert_eq!(scan.code(), tonic::Code::DataLoss, "{scan:?}");

    // Health turns NOT_SERVING (the watch runs on its own task: give it a moment).
    let mut health = HealthClient::new(server.channel().await);
    let mut status = ServingStatus::Serving as i32;
    for _ in 0..50 {
        let request = HealthCheckRequest { service: "pax.ledger.v1.LedgerService".into() };
        status = health.check(request).await.unwrap().into_inner().status;
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, ServingStatus::NotServing as i32);

    let refused = client.append(append(vec![member_joined("TZZZ")])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("halted"), "{refused:?}");

    // Intact records far from it are still served.
    let intact = client.get_event(pb::GetEventRequest { event_id: ids[900].clone() }).await.unwrap().into_inner();
    assert_eq!(intact.position, 901);
    drop((client, health));
    server.stop().await;
    drop(dir);
}
