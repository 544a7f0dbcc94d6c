//! QueryService and ProjectionService against a real server: read-your-writes, as-of answers,
//! pagination, persistence across restarts, rebuilds, and the error table.

use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::projection_service_client::ProjectionServiceClient;
use pax_ledger::proto::v1::query_service_client::QueryServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::*;

async fn query(server: &TestServer) -> QueryServiceClient<Channel> {
    QueryServiceClient::new(server.channel().await)
}

async fn projections(server: &TestServer) -> ProjectionServiceClient<Channel> {
    ProjectionServiceClient::new(server.channel().await)
}

fn at_least(position: u64) -> Option<pb::Consistency> {
    Some(pb::Consistency { min_position: position, ..Default::default() })
}

fn as_of_position(position: u64) -> Option<pb::Consistency> {
    Some(pb::Consistency { as_of_position: Some(position), ..Default::default() })
}

fn as_of_time(time: prost_types::Timestamp) -> Option<pb::Consistency> {
    Some(pb::Consistency { as_of_time: Some(time), ..Default::default() })
}

/// Appends one request and returns the position of its last event and its record time.
async fn commit(server: &TestServer, events: Vec<pb::ProposedEvent>) -> (u64, prost_types::Timestamp) {
    let response = server.client().await.append(append(events)).await.expect("append").into_inner();
    (response.events.last().unwrap().position, response.record_time.unwrap())
}

fn rule_change(treatment: pb::Treatment, levy_bps: Option<u32>, effective_from: &str) -> pb::ProposedEvent {
    let mut event = export_rule_changed("us-cn-nvidia-h200", treatment, levy_bps);
    let Some(pb::event_data::Kind::ExportRuleChanged(change)) = event.data.as_mut().unwrap().kind.as_mut() else {
        unreachable!()
    };
    change.effective_from = effective_from.into();
    event
}

async fn all_members(
    client: &mut QueryServiceClient<Channel>,
    consistency: Option<pb::Consistency>,
) -> Vec<pb::Member> {
    let request =
        pb::ListMembersRequest { include_withdrawn: true, consistency, page_size: 1000, ..Default::default() };
    client.list_members(request).await.expect("list members").into_inner().members
}

#[tokio::test]
async fn a_query_with_the_append_position_as_min_position_always_sees_the_write() {
    let server = TestServer::start().await;
    let mut client = query(&server).await;
    for i in 0..60 {
        let code = format!("Q{}{}", (b'A' + i / 26) as char, (b'A' + i % 26) as char);
        let (position, _) = commit(&server, vec![member_joined(&code)]).await;
        let request = pb::GetMemberRequest { code: code.clone(), consistency: at_least(position) };
        let answer = client.get_member(request).await.expect("the write is visible").into_inner();
        assert!(answer.position >= position);
        let member = answer.member.unwrap();
        assert_eq!((member.code.as_str(), member.role), (code.as_str(), pb::MemberRole::Member as i32));
        let provenance = member.provenance.unwrap();
        assert_eq!((provenance.first_position, provenance.stream), (position, format!("member-{code}")));
    }
}

#[tokio::test]
async fn an_export_rule_changed_three_times_answers_for_each_time_and_each_effective_date() {
    let server = TestServer::start().await;
    let mut client = query(&server).await;
    // Recorded in this order; the third change is retroactive: it applies from June, before
    // the second one's December.
    let mut recorded = Vec::new();
    for change in [
        rule_change(pb::Treatment::Prohibited, None, "2025-01-01"),
        rule_change(pb::Treatment::AllowedWithLevy, Some(2500), "2025-12-08"),
        rule_change(pb::Treatment::LicenseRequired, None, "2025-06-01"),
    ] {
        recorded.push(commit(&server, vec![change]).await);
        // Distinct record times (they are taken per commit group, at microsecond precision).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let head = recorded[2].0;
    let treatment = |rule: &pb::ExportRule| pb::Treatment::try_from(rule.terms.as_ref().unwrap().treatment).unwrap();

    // As of each record time: the latest change known then.
    let expected = [pb::Treatment::Prohibited, pb::Treatment::AllowedWithLevy, pb::Treatment::LicenseRequired];
    for ((position, time), expected) in recorded.iter().zip(expected) {
        let request = pb::GetExportRuleRequest {
            rule_id: "us-cn-nvidia-h200".into(),
            consistency: as_of_time(*time),
            ..Default::default()
        };
        let answer = client.get_export_rule(request).await.unwrap().into_inner();
        assert_eq!(answer.position, *position, "as of its record time, the ledger stood at that change");
        let rule = answer.rule.unwrap();
        assert_eq!(treatment(&rule), expected);
        assert_eq!(rule.timeline.len() as u64, rule.changes);
        assert_eq!(rule.changes, position - recorded[0].0 + 1);
    }
    // Before the first change was recorded: no such rule yet.
    let before = prost_types::Timestamp { seconds: recorded[0].1.seconds - 3600, nanos: 0 };
    let request = pb::GetExportRuleRequest {
        rule_id: "us-cn-nvidia-h200".into(),
        consistency: as_of_time(before),
        ..Default::default()
    };
    let status = client.get_export_rule(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // In force on each date, as known now, and as known after the second change.
    let on = |date: &str, consistency: Option<pb::Consistency>| pb::ListExportRulesRequest {
        effective_on: date.into(),
        consistency,
        ..Default::default()
    };
    for (date, now, after_second) in [
        ("2024-12-31", None, None),
        ("2025-03-01", Some(pb::Treatment::Prohibited), Some(pb::Treatment::Prohibited)),
        ("2025-07-01", Some(pb::Treatment::LicenseRequired), Some(pb::Treatment::Prohibited)),
        ("2025-12-10", Some(pb::Treatment::AllowedWithLevy), Some(pb::Treatment::AllowedWithLevy)),
    ] {
        let answer = client.list_export_rules(on(date, at_least(head))).await.unwrap().into_inner();
        assert_eq!(answer.position, head);
        assert_eq!(answer.rules.iter().map(treatment).collect::<Vec<_>>(), Vec::from_iter(now), "on {date}, now");
        let answer = client.list_export_rules(on(date, as_of_position(recorded[1].0))).await.unwrap().into_inner();
        assert_eq!(answer.position, recorded[1].0);
        assert_eq!(
            answer.rules.iter().map(treatment).collect::<Vec<_>>(),
            Vec::from_iter(after_second),
            "on {date}, as known after the second change"
        );
    }
    // The same through GetExportRule, with the levy of the rule in force.
    let request = pb::GetExportRuleRequest {
        rule_id: "us-cn-nvidia-h200".into(),
        effective_on: "2025-12-10".into(),
        consistency: at_least(head),
    };
    let rule = client.get_export_rule(request).await.unwrap().into_inner().rule.unwrap();
    assert_eq!(rule.terms.as_ref().unwrap().levy_bps, Some(2500));
    let request = pb::GetExportRuleRequest {
        rule_id: "us-cn-nvidia-h200".into(),
        effective_on: "2024-06-01".into(),
        consistency: at_least(head),
    };
    assert_eq!(client.get_export_rule(request).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_thousand_projects_in_pages_of_seven_come_once_each_in_a_stable_order_pinned_to_one_position() {
    let server = TestServer::start().await;
    commit(&server, vec![member_joined("US")]).await;
    let mut ids: Vec<String> = (0..1000).map(|_| id()).collect();
    for chunk in ids.chunks(250) {
        commit(&server, chunk.iter().map(|id| project_identified(id, "US", &[])).collect()).await;
    }
    let head = head_position(&mut server.client().await).await;
    ids.sort();
    let mut client = query(&server).await;
    let list = |page_token: String| pb::ListProjectsRequest {
        page_size: 7,
        page_token,
        consistency: at_least(head),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client.list_projects(list(token)).await.unwrap().into_inner();
        assert_eq!(page.position, head, "every page reflects the first page's position");
        assert!(page.projects.len() <= 7);
        seen.extend(page.projects.into_iter().map(|p| p.project_id));
        pages += 1;
        if pages == 3 {
            // Writes between pages do not show up in this listing.
            commit(&server, vec![project_identified(&id(), "US", &[])]).await;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "each project exactly once, in project-id order");
    assert!(pages >= 143, "{pages} pages");

    // A token is bound to its query.
    let first = client.list_projects(list(String::new())).await.unwrap().into_inner();
    let other = pb::ListProjectsRequest {
        page_token: first.next_page_token.clone(),
        pillar: pb::Pillar::Energy as i32,
        ..Default::default()
    };
    let status = client.list_projects(other).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
    let members = pb::ListMembersRequest { page_token: first.next_page_token, ..Default::default() };
    assert_eq!(client.list_members(members).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn filters_select_members_projects_and_commitments() {
    let server = TestServer::start().await;
    let project = id();
    let (open, fulfilled) = (id(), id());
    let (head, _) = commit(
        &server,
        vec![
            member_joined("US"),
            member_joined("JP"),
            member_joined_as("TW", pb::MemberRole::Guest),
            member_joined("KR"),
            member_withdrew("KR"),
            project_identified(&project, "US", &["JP"]),
            project_status_changed(&project, pb::ProjectStatus::Approved),
            project_identified(&id(), "JP", &[]),
            commitment_made(&open, "US"),
            commitment_made(&fulfilled, "JP"),
            commitment_fulfilled(&fulfilled),
            summit_convened("2025-12-11", "US", &["US", "JP", "TW"]),
        ],
    )
    .await;
    let mut client = query(&server).await;
    let codes = |members: Vec<pb::Member>| members.into_iter().map(|m| m.code).collect::<Vec<_>>();
    let request = pb::ListMembersRequest { consistency: at_least(head), ..Default::default() };
    assert_eq!(codes(client.list_members(request).await.unwrap().into_inner().members), ["JP", "TW", "US"]);
    let request = pb::ListMembersRequest {
        consistency: at_least(head),
        role: pb::MemberRole::Guest as i32,
        ..Default::default()
    };
    assert_eq!(codes(client.list_members(request).await.unwrap().into_inner().members), ["TW"]);
    let all = all_members(&mut client, at_least(head)).await;
    assert_eq!(codes(all.clone()), ["JP", "KR", "TW", "US"], "withdrawn ones only when asked");
    assert!(all.iter().find(|m| m.code == "KR").unwrap().withdrawn_time.is_some());

    let request = pb::ListProjectsRequest { consistency: at_least(head), member: "JP".into(), ..Default::default() };
    assert_eq!(client.list_projects(request).await.unwrap().into_inner().projects.len(), 2, "host or partner");
    let request = pb::ListProjectsRequest {
        consistency: at_least(head),
        status: pb::ProjectStatus::Approved as i32,
        ..Default::default()
    };
    let approved = client.list_projects(request).await.unwrap().into_inner().projects;
    assert_eq!(approved.iter().map(|p| p.project_id.as_str()).collect::<Vec<_>>(), [project.as_str()]);
    let request = pb::GetProjectRequest { project_id: project.clone(), consistency: at_least(head) };
    let full = client.get_project(request).await.unwrap().into_inner().project.unwrap();
    assert_eq!(full.status_history.len(), 2);
    assert_eq!(
        full.changes.iter().map(|c| c.event_type.as_str()).collect::<Vec<_>>(),
        ["project_identified", "project_status_changed"]
    );

    let commitments = |status: pb::CommitmentStatus, on: &str| pb::ListCommitmentsRequest {
        consistency: at_least(head),
        status: status as i32,
        on: on.into(),
        ..Default::default()
    };
    let ids = |list: Vec<pb::Commitment>| list.into_iter().map(|c| c.commitment_id).collect::<Vec<_>>();
    let mut client2 = client.clone();
    let mut list = async |request| ids(client2.list_commitments(request).await.unwrap().into_inner().commitments);
    assert_eq!(list(commitments(pb::CommitmentStatus::Open, "")).await, std::slice::from_ref(&open));
    assert_eq!(list(commitments(pb::CommitmentStatus::Fulfilled, "")).await, std::slice::from_ref(&fulfilled));
    assert!(list(commitments(pb::CommitmentStatus::Overdue, "2026-12-31")).await.is_empty(), "due that day");
    assert_eq!(list(commitments(pb::CommitmentStatus::Overdue, "2027-01-01")).await, std::slice::from_ref(&open));

    let summary = client
        .get_summary(pb::GetSummaryRequest { consistency: at_least(head), on: "2027-01-01".into() })
        .await
        .unwrap()
        .into_inner();
    let count = |counts: &[pb::Count], key: &str| counts.iter().find(|c| c.key == key).unwrap().count;
    assert_eq!((count(&summary.members_by_role, "member"), count(&summary.members_by_role, "guest")), (2, 1));
    assert_eq!(summary.members_withdrawn, 1);
    assert_eq!(count(&summary.projects_by_status, "approved"), 1);
    assert_eq!(count(&summary.projects_by_status, "identified"), 1);
    assert_eq!(count(&summary.commitments_by_status, "open"), 1);
    assert_eq!(summary.commitments_overdue, 1);
    assert_eq!((summary.summits, summary.position), (1, head));
    let summits = client.list_summits(pb::ListSummitsRequest::default()).await.unwrap().into_inner().summits;
    assert_eq!(summits[0].participants, ["US", "JP", "TW"]);
}

#[tokio::test]
async fn as_of_a_past_position_the_views_are_what_they_were_and_the_summary_too() {
    let server = TestServer::start().await;
    let (joined, _) = commit(&server, vec![member_joined_as("JP", pb::MemberRole::Guest)]).await;
    let (promoted, _) = commit(&server, vec![member_role_changed("JP", pb::MemberRole::Member)]).await;
    let (withdrawn, _) = commit(&server, vec![member_withdrew("JP")]).await;
    let mut client = query(&server).await;
    for (position, role, history, withdrawn) in [
        (joined, pb::MemberRole::Guest, 1, false),
        (promoted, pb::MemberRole::Member, 2, false),
        (withdrawn, pb::MemberRole::Member, 2, true),
    ] {
        let members = all_members(&mut client, as_of_position(position)).await;
        let [member] = members.as_slice() else { panic!("{members:?}") };
        assert_eq!((member.role, member.role_history.len(), member.withdrawn), (role as i32, history, withdrawn));
        let request = pb::GetMemberRequest { code: "JP".into(), consistency: as_of_position(position) };
        let full = client.get_member(request).await.unwrap().into_inner();
        assert_eq!(full.position, position);
        assert_eq!(full.member.unwrap().changes.len() as u64, position - joined + 1);
        let request = pb::GetSummaryRequest { consistency: as_of_position(position), ..Default::default() };
        let summary = client.get_summary(request).await.unwrap().into_inner();
        assert_eq!(summary.members_withdrawn, u64::from(withdrawn));
    }
    assert!(all_members(&mut client, as_of_position(0)).await.is_empty(), "before the first event");
    let request = pb::GetMemberRequest { code: "JP".into(), consistency: as_of_position(0) };
    assert_eq!(client.get_member(request).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_past_summary_is_walked_back_from_the_live_one_and_equals_one_added_up() {
    let server = TestServer::start().await;
    let joins = ["US", "JP", "KR", "SG"].map(|code| member_joined_as(code, pb::MemberRole::Member));
    let (before, _) = commit(&server, joins.to_vec()).await;
    commit(&server, vec![member_role_changed("JP", pb::MemberRole::Guest)]).await;
    let (head, _) = commit(&server, vec![member_withdrew("KR"), member_joined("EU")]).await;
    let ledger = server.ledger.clone();
    let wait = Duration::from_secs(10);
    let live = ledger.views_at(pax_ledger::ledger::AsOf::Latest, Some(pax_ledger::domain::Position(head)), wait);
    let live = live.await.unwrap();
    let past = ledger.views_at(pax_ledger::ledger::AsOf::Position(pax_ledger::domain::Position(before)), None, wait);
    let past = past.await.unwrap();
    let walked = ledger.views_summary_walked_back(&past).unwrap().expect("3 events back, 5 records: walked back");
    let added_up = ledger.views_summary_added_up(&past).unwrap();
    assert_eq!(walked, added_up);
    assert_eq!((walked.members_by_role, walked.members_withdrawn, walked.records.records()), ([4, 0], 0, 4));
    assert_eq!(ledger.views_summary(&live).unwrap(), ledger.views_summary_added_up(&live).unwrap());
    let (digest, records) = ledger.views_digest(&past).unwrap();
    assert_eq!((digest, records), (added_up.digest(past.position), 4));
    assert_ne!(digest, ledger.views_digest(&live).unwrap().0);
}

#[tokio::test]
async fn bad_consistency_and_filters_get_the_codes_of_the_error_table() {
    let server = TestServer::start().await;
    let (head, _) = commit(&server, vec![member_joined("US")]).await;
    let mut client = query(&server).await;

    let request = pb::GetMemberRequest { code: "US".into(), consistency: as_of_position(head + 1) };
    assert_eq!(client.get_member(request).await.unwrap_err().code(), Code::OutOfRange);

    let both = Some(pb::Consistency {
        as_of_position: Some(1),
        as_of_time: Some(prost_types::Timestamp::default()),
        ..Default::default()
    });
    let status = client.get_member(pb::GetMemberRequest { code: "US".into(), consistency: both }).await.unwrap_err();
    assert_eq!(
        (status.code(), violated_fields(&status)),
        (Code::InvalidArgument, vec!["consistency.as_of_time".into()])
    );

    let status = client.get_member(pb::GetMemberRequest { code: "us".into(), consistency: None }).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["code".into()]));
    let status = client.get_member(pb::GetMemberRequest { code: "JP".into(), consistency: None }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = client.list_members(pb::ListMembersRequest { role: 9, ..Default::default() }).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["role".into()]));
    let status = client.list_members(pb::ListMembersRequest { page_size: -1, ..Default::default() }).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["page_size".into()]));
    let request = pb::ListExportRulesRequest { effective_on: "2025-13-01".into(), ..Default::default() };
    let status = client.list_export_rules(request).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["effective_on".into()]));
    let request = pb::ListMembersRequest { page_token: "not-a-token".into(), ..Default::default() };
    assert_eq!(client.list_members(request).await.unwrap_err().code(), Code::InvalidArgument);

    // A position nobody has written yet: the views cannot reach it within the deadline.
    let mut request = tonic::Request::new(pb::GetMemberRequest { code: "US".into(), consistency: at_least(head + 5) });
    request.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let status = client.get_member(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn views_survive_a_restart_without_replaying_the_log_and_keep_their_digest() {
    let server = TestServer::start().await;
    let (head, _) = commit(
        &server,
        (0..200).map(|i| member_joined(&format!("R{}{}", (b'A' + i / 26) as char, (b'A' + i % 26) as char))).collect(),
    )
    .await;
    let mut status_client = projections(&server).await;
    // Wait for the views to reach the head, then take the status.
    all_members(&mut query(&server).await, at_least(head)).await;
    let before = status_client.get_projection_status(pb::GetProjectionStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((before.position, before.lag, before.records), (head, 0, 200));

    let server = server.restart().await;
    let after = server.ledger.views_snapshot();
    assert_eq!(after.position.0, head, "the views came back at their position, not from a replay");
    let status =
        projections(&server).await.get_projection_status(pb::GetProjectionStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((status.position, status.view_digest), (head, before.view_digest));
}

#[tokio::test]
async fn a_rebuild_reproduces_the_live_digest_while_queries_keep_answering() {
    let server = TestServer::start().await;
    let mut events = vec![member_joined("US"), member_joined_as("TW", pb::MemberRole::Guest)];
    for _ in 0..300 {
        let project = id();
        events.push(project_identified(&project, "US", &["TW"]));
        events.push(project_status_changed(&project, pb::ProjectStatus::Approved));
    }
    let (head, _) = commit(&server, events).await;
    let mut client = query(&server).await;
    all_members(&mut client, at_least(head)).await;
    let mut projection = projections(&server).await;
    let live = projection.get_projection_status(pb::GetProjectionStatusRequest {}).await.unwrap().into_inner();

    let mut stream =
        projection.rebuild_projections(pb::RebuildProjectionsRequest {}).await.expect("rebuild starts").into_inner();
    let mut result = None;
    while let Some(message) = stream.message().await.expect("rebuild stream") {
        match message.update.unwrap() {
            pb::rebuild_projections_response::Update::Progress(progress) => {
                assert!(progress.events_done <= progress.events_total)
            }
            pb::rebuild_projections_response::Update::Result(done) => result = Some(done),
        }
        // Queries answer meanwhile.
        assert_eq!(all_members(&mut client, None).await.len(), 2);
    }
    let result = result.expect("a final result");
    assert_eq!((result.position, &result.view_digest, result.records), (head, &live.view_digest, 302));
    assert_eq!(result.events, head);
    let status = projection.get_projection_status(pb::GetProjectionStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.generation, live.generation + 1);
    assert_eq!(status.view_digest, live.view_digest);
    assert_eq!(status.last_rebuild.unwrap().view_digest, live.view_digest);

    // Appends after the rebuild land in the new generation, and survive a restart.
    let (later, _) = commit(&server, vec![member_joined("JP")]).await;
    let server = server.restart().await;
    let members = all_members(&mut query(&server).await, at_least(later)).await;
    assert_eq!(members.len(), 3);
}

#[tokio::test]
async fn a_second_rebuild_while_one_runs_is_refused() {
    let server = TestServer::start().await;
    let (head, _) = commit(&server, vec![member_joined("US")]).await;
    let ledger = server.ledger.clone();
    let (inside, outcome) = tokio::task::spawn_blocking(move || {
        let mut inside = None;
        let outcome = ledger.rebuild_views(|_| inside = Some(ledger.rebuild_views(|_| {}).map(|_| ())));
        (inside, outcome)
    })
    .await
    .unwrap();
    let error = inside.expect("progress was reported").unwrap_err();
    assert!(error.to_string().contains("already running"), "{error}");
    assert_eq!(pax_ledger::service::status::from_ledger(error).code(), Code::FailedPrecondition);
    assert_eq!(outcome.unwrap().position.0, head);
}

#[tokio::test]
async fn views_written_by_an_older_view_format_or_lost_are_rebuilt_on_open() {
    let server = TestServer::start().await;
    let (head, _) = commit(&server, vec![member_joined("US"), member_joined("JP")]).await;
    all_members(&mut query(&server).await, at_least(head)).await;
    let data = server.data.clone();
    let dir = server.stop().await;
    {
        // Forget which generation is live, as a store from before views existed would; and
        // leave keys of the views' first layout (in the default tree, under `V`).
        let db = open_sled(&data);
        db.remove(b"Mviews").unwrap();
        for i in 0..5000u32 {
            db.insert([b"V".as_slice(), &i.to_be_bytes()].concat(), b"old".as_slice()).unwrap();
        }
        db.flush().unwrap();
    }
    let server = TestServer::start_in(&data).await;
    let members = all_members(&mut query(&server).await, at_least(head)).await;
    assert_eq!(members.iter().map(|m| m.code.as_str()).collect::<Vec<_>>(), ["JP", "US"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir2 = server.stop().await;
    let db = open_sled(&data);
    assert_eq!(db.scan_prefix(b"V").count(), 0, "the first layout's keys are removed");
    let trees: Vec<_> = db.tree_names().into_iter().filter(|n| n.starts_with(b"views-")).collect();
    assert_eq!(trees.len(), 1, "one generation left: {trees:?}");
    drop((dir, dir2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn views_are_complete_when_the_writer_hands_over_more_than_the_projector_takes() {
    // A hand-off of one group: most groups overflow it, and the projector reads them from the
    // log, between groups it got from memory.
    let dir = tempfile::tempdir().unwrap();
    let config = pax_ledger::ledger::LedgerConfig { projector_handoff_max: 1, ..Default::default() };
    let server = TestServer::start_with(dir.path(), config).await;
    let mut tasks = Vec::new();
    for client in 0..8u8 {
        let mut ledger = server.client().await;
        tasks.push(tokio::spawn(async move {
            let code = format!("H{}", (b'A' + client) as char);
            ledger.append(append(vec![member_joined(&code)])).await.unwrap();
            let mut last = 0;
            for _ in 0..40 {
                let events = (0..5).map(|_| commitment_made(&id(), &code)).collect();
                last = ledger.append(append(events)).await.unwrap().into_inner().events[4].position;
            }
            last
        }));
    }
    let mut head = 0;
    for task in tasks {
        head = head.max(task.await.unwrap());
    }
    let mut client = query(&server).await;
    let summary = client
        .get_summary(pb::GetSummaryRequest { consistency: at_least(head), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.commitments_by_status.iter().map(|c| c.count).sum::<u64>(), 8 * 40 * 5);
    let live = projections(&server).await.get_projection_status(pb::GetProjectionStatusRequest {}).await.unwrap();
    let outcome = tokio::task::spawn_blocking({
        let ledger = server.ledger.clone();
        move || ledger.rebuild_views(|_| {}).unwrap()
    })
    .await
    .unwrap();
    let live = live.into_inner();
    assert_eq!(outcome.position.0, live.position);
    let hex = hex::encode(outcome.digest);
    assert_eq!(hex, live.view_digest, "the live views equal a rebuild");
}

#[tokio::test]
async fn a_long_history_answers_its_latest_thousand_steps_and_says_how_many_it_left_out() {
    let server = TestServer::start().await;
    commit(&server, vec![rule_change(pb::Treatment::Prohibited, None, "2020-01-01")]).await;
    let later = (0..1004).map(|_| rule_change(pb::Treatment::Allowed, None, "2025-12-08")).collect::<Vec<_>>();
    let mut head = 0;
    for chunk in later.chunks(500) {
        head = commit(&server, chunk.to_vec()).await.0;
    }
    let mut client = query(&server).await;
    let get = |effective_on: &str| pb::GetExportRuleRequest {
        rule_id: "us-cn-nvidia-h200".into(),
        consistency: at_least(head),
        effective_on: effective_on.into(),
    };
    let rule = client.get_export_rule(get("")).await.unwrap().into_inner().rule.unwrap();
    assert_eq!((rule.changes, rule.timeline.len(), rule.timeline_omitted), (1005, 1000, 5));
    assert_eq!(rule.timeline[0].change.as_ref().unwrap().position, 6, "the latest thousand, in log order");
    // "In force on" still sees the whole timeline, the omitted part included.
    let rule = client.get_export_rule(get("2021-01-01")).await.unwrap().into_inner().rule.unwrap();
    assert_eq!(rule.terms.unwrap().treatment, pb::Treatment::Prohibited as i32);
}
