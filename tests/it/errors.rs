//! Every row of the error table (DESIGN.md §4) reached by a real request, with its code and its
//! machine-readable detail, and the atomicity rule: a rejected request writes nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use pax_ledger::audit::hex;
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pb::event_data::Kind;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::support::*;

/// An Ed25519 public key (RFC 8032 §7.1, TEST 1), in hexadecimal.
const SIGNING_PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

type Client = LedgerServiceClient<Channel>;

fn joined_with(code: &str, edit: impl FnOnce(&mut pb::MemberJoined)) -> pb::ProposedEvent {
    let mut event = member_joined(code);
    let Some(Kind::MemberJoined(data)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) else { unreachable!() };
    edit(data);
    event
}

fn rule_with(edit: impl FnOnce(&mut pb::ExportRuleChanged)) -> pb::ProposedEvent {
    let mut event = export_rule_changed("us-cn-errors", pb::Treatment::Allowed, None);
    let Some(Kind::ExportRuleChanged(data)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) else { unreachable!() };
    edit(data);
    event
}

fn commitment_with(edit: impl FnOnce(&mut pb::CommitmentMade)) -> pb::ProposedEvent {
    let mut event = commitment_made(&id(), "JP");
    let Some(Kind::CommitmentMade(data)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) else { unreachable!() };
    edit(data);
    event
}

fn with_id(mut event: pb::ProposedEvent, event_id: &str) -> pb::ProposedEvent {
    event.event_id = event_id.into();
    event
}

/// Asserts that no event of `request` is readable by its id (in canonical form, whatever the
/// request's spelling), except the ids in `committed`.
async fn assert_not_written(client: &mut Client, request: &pb::AppendRequest, committed: &[&str]) {
    for event in &request.events {
        let parsed = uuid::Uuid::try_parse(&event.event_id).ok().filter(|u| !u.is_nil());
        if let Some(id) = parsed
            && !committed.contains(&event.event_id.as_str())
        {
            let event_id = id.hyphenated().to_string();
            let status = client.get_event(pb::GetEventRequest { event_id }).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "event {} was written: {status:?}", event.event_id);
        }
    }
}

/// The spellings of `id` that the `uuid` crate reads but that are not its canonical form.
fn other_spellings(id: &str) -> Vec<String> {
    let id = uuid::Uuid::try_parse(id).unwrap();
    vec![
        id.hyphenated().to_string().to_uppercase(),
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
    ]
}

/// Appends `request`, expects `code`, and checks that nothing was written (head unchanged, no
/// event of the request readable).
async fn rejected(client: &mut Client, request: pb::AppendRequest, code: Code) -> tonic::Status {
    rejected_except(client, request, code, &[]).await
}

/// [`rejected`], for a request that names the already committed events `committed`.
async fn rejected_except(
    client: &mut Client,
    request: pb::AppendRequest,
    code: Code,
    committed: &[&str],
) -> tonic::Status {
    let head = head_position(client).await;
    let status = client.append(request.clone()).await.expect_err("the append is rejected");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(head_position(client).await, head, "a rejected append moved the head");
    assert_not_written(client, &request, committed).await;
    status
}

/// INVALID_ARGUMENT naming exactly `field`, and nothing written.
async fn check_invalid(client: &mut Client, request: pb::AppendRequest, field: &str) {
    let status = rejected(client, request, Code::InvalidArgument).await;
    assert_eq!(violated_fields(&status), [field], "{status:?}");
}

/// FAILED_PRECONDITION for the event at `index`, and nothing written.
async fn check_rule_broken(client: &mut Client, request: pb::AppendRequest, index: usize, reason: &str) {
    let status = rejected(client, request, Code::FailedPrecondition).await;
    let failure =
        status.get_details_precondition_failure().unwrap_or_else(|| panic!("no PreconditionFailure: {status:?}"));
    let subjects: Vec<_> = failure.violations.iter().map(|v| (v.r#type.as_str(), v.subject.as_str())).collect();
    assert_eq!(subjects, [("DOMAIN_RULE", format!("events[{index}]").as_str())], "{status:?}");
    assert!(status.message().contains(reason), "{:?} does not say {reason:?}", status.message());
}

/// ABORTED with the stream's actual revision in the ErrorInfo, and nothing written.
async fn check_wrong_revision(
    client: &mut Client,
    request: pb::AppendRequest,
    stream: &str,
    expected: &str,
    actual: &str,
) {
    let status = rejected(client, request, Code::Aborted).await;
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo: {status:?}"));
    assert_eq!(info.reason, "WRONG_EXPECTED_REVISION");
    assert_eq!(info.metadata.get("stream").map(String::as_str), Some(stream), "{status:?}");
    assert_eq!(info.metadata.get("expected_revision").map(String::as_str), Some(expected), "{status:?}");
    assert_eq!(info.metadata.get("actual_revision").map(String::as_str), Some(actual), "{status:?}");
}

#[tokio::test]
async fn malformed_appends_are_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let duplicate = member_joined("KR");
    let long_name = "n".repeat(201);
    let cases: Vec<(pb::AppendRequest, &str)> = vec![
        (append(vec![]), "events"),
        (append(vec![with_id(member_joined("KR"), "not-a-uuid")]), "events[0].event_id"),
        (append(vec![with_id(member_joined("KR"), "00000000-0000-0000-0000-000000000000")]), "events[0].event_id"),
        (append(vec![joined_with("KR", |m| m.role = 0)]), "events[0].data.member_joined.role"),
        (append(vec![joined_with("KR", |m| m.role = 7)]), "events[0].data.member_joined.role"),
        (append(vec![joined_with("KR", |m| m.kind = 0)]), "events[0].data.member_joined.kind"),
        (append(vec![joined_with("KR", |m| m.code = "kr".into())]), "events[0].data.member_joined.code"),
        (append(vec![joined_with("KR", |m| m.code = "K".into())]), "events[0].data.member_joined.code"),
        (append(vec![joined_with("KR", |m| m.code = "KOREASOUTH".into())]), "events[0].data.member_joined.code"),
        (append(vec![joined_with("KR", |m| m.name = long_name.clone())]), "events[0].data.member_joined.name"),
        (append(vec![joined_with("KR", |m| m.name = "  ".into())]), "events[0].data.member_joined.name"),
        (append(vec![rule_with(|r| r.levy_bps = Some(100))]), "events[0].data.export_rule_changed.levy_bps"),
        (
            append(vec![rule_with(|r| {
                r.treatment = pb::Treatment::AllowedWithLevy as i32;
                r.levy_bps = Some(10_001);
            })]),
            "events[0].data.export_rule_changed.levy_bps",
        ),
        (
            append(vec![rule_with(|r| r.treatment = pb::Treatment::AllowedWithLevy as i32)]),
            "events[0].data.export_rule_changed.levy_bps",
        ),
        (
            append(vec![rule_with(|r| r.effective_from = "2025-02-30".into())]),
            "events[0].data.export_rule_changed.effective_from",
        ),
        (
            append(vec![rule_with(|r| r.effective_from = "2025-2-3".into())]),
            "events[0].data.export_rule_changed.effective_from",
        ),
        (append(vec![rule_with(|r| r.rule_id = "US_CN".into())]), "events[0].data.export_rule_changed.rule_id"),
        (append(vec![rule_with(|r| r.destination = "US".into())]), "events[0].data.export_rule_changed.destination"),
        (append(vec![summit_convened("0000-12-12", "JP", &[])]), "events[0].data.summit_convened.date"),
        (append(vec![commitment_with(|c| c.due_on = "31/12/2026".into())]), "events[0].data.commitment_made.due_on"),
        (
            append(vec![commitment_with(|c| c.commitment_id = "c-1".into())]),
            "events[0].data.commitment_made.commitment_id",
        ),
        (append(vec![project_identified(&id(), "JP", &["KR", "KR"])]), "events[0].data.project_identified.partners[1]"),
        (append(vec![pb::ProposedEvent { data: None, ..member_joined("KR") }]), "events[0].data"),
        (
            append(vec![pb::ProposedEvent {
                effective_time: Some(prost_types::Timestamp { seconds: 1_765_152_000, nanos: -1 }),
                ..member_joined("KR")
            }]),
            "events[0].effective_time",
        ),
        (
            append(vec![member_joined("KR"), member_joined("DE"), joined_with("FR", |m| m.code = "fr".into())]),
            "events[2].data.member_joined.code",
        ),
        (append(vec![duplicate.clone(), with_id(member_joined("DE"), &duplicate.event_id)]), "events[1].event_id"),
        (
            append(vec![pb::ProposedEvent {
                metadata: Some(pb::EventMetadata {
                    labels: [("Bad Key".to_owned(), "v".to_owned())].into(),
                    ..Default::default()
                }),
                ..member_joined("KR")
            }]),
            "events[0].metadata.labels[Bad Key]",
        ),
        (append_expecting(vec![member_joined("KR")], vec![expect_revision("member-kr", 0)]), "expectations[0].stream"),
        (
            append_expecting(
                vec![member_joined("KR")],
                vec![pb::StreamExpectation {
                    stream: "member-KR".into(),
                    expected: Some(pb::stream_expectation::Expected::State(9)),
                }],
            ),
            "expectations[0].state",
        ),
        (
            append_expecting(
                vec![member_joined("KR")],
                vec![expect_state("member-KR", pb::ExpectedState::NoStream), expect_revision("member-KR", 0)],
            ),
            "expectations[1].stream",
        ),
    ];
    for (request, field) in cases {
        check_invalid(&mut client, request, field).await;
    }
    // The limits themselves are accepted.
    let boundary = vec![
        joined_with("KR", |m| m.name = "é".repeat(200)),
        rule_with(|r| {
            r.treatment = pb::Treatment::AllowedWithLevy as i32;
            r.levy_bps = Some(10_000);
        }),
        rule_with(|r| {
            r.treatment = pb::Treatment::AllowedWithLevy as i32;
            r.levy_bps = Some(0);
            r.effective_from = "2024-02-29".into();
        }),
    ];
    let response = client.append(append(boundary)).await.unwrap().into_inner();
    assert_eq!(response.events.iter().map(|e| e.position).collect::<Vec<_>>(), [2, 3, 4]);
    server.stop().await;
}

#[tokio::test]
async fn malformed_reads_are_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .append(append((0..5).map(|_| export_rule_changed("r", pb::Treatment::Allowed, None)).collect()))
        .await
        .unwrap();

    let stream_read = |stream: &str, direction: i32, limit: u32| pb::ReadStreamRequest {
        stream: stream.into(),
        direction,
        from_revision: None,
        limit,
    };
    for (request, field) in [
        (stream_read("member-jp", 0, 0), "stream"),
        (stream_read("nonsense", 0, 0), "stream"),
        (stream_read("", 0, 0), "stream"),
        (stream_read("project-not-a-uuid", 0, 0), "stream"),
        (stream_read("export-rule-r", 0, 1001), "limit"),
        (stream_read("export-rule-r", 5, 0), "direction"),
    ] {
        let status = client.read_stream(request.clone()).await.expect_err("rejected");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}: {status:?}");
        assert_eq!(violated_fields(&status), [field], "{request:?}");
    }

    let first = client
        .read_all(pb::ReadAllRequest {
            page_size: 2,
            stream_prefixes: vec!["export-rule-".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let backward_token = client
        .read_all(pb::ReadAllRequest {
            page_size: 2,
            direction: pb::ReadDirection::Backward as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    for (request, field) in [
        (pb::ReadAllRequest { event_types: vec!["member_left".into()], ..Default::default() }, "event_types[0]"),
        (
            pb::ReadAllRequest {
                event_types: vec!["member_joined".into(), "MemberJoined".into()],
                ..Default::default()
            },
            "event_types[1]",
        ),
        (pb::ReadAllRequest { stream_prefixes: vec![String::new()], ..Default::default() }, "stream_prefixes[0]"),
        (pb::ReadAllRequest { page_size: 1001, ..Default::default() }, "page_size"),
        (pb::ReadAllRequest { direction: 2, ..Default::default() }, "direction"),
        // A token of another query: other filters, other direction, or no token at all.
        (pb::ReadAllRequest { page_token: first.next_page_token.clone(), ..Default::default() }, "page_token"),
        (
            pb::ReadAllRequest {
                page_token: first.next_page_token.clone(),
                stream_prefixes: vec!["member-".into()],
                ..Default::default()
            },
            "page_token",
        ),
        (pb::ReadAllRequest { page_token: backward_token.clone(), ..Default::default() }, "page_token"),
        (pb::ReadAllRequest { page_token: "not a token".into(), ..Default::default() }, "page_token"),
    ] {
        let status = client.read_all(request.clone()).await.expect_err("rejected");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}: {status:?}");
        assert_eq!(violated_fields(&status), [field], "{request:?}");
    }
    // The token works with its own query.
    let second = client
        .read_all(pb::ReadAllRequest {
            page_size: 2,
            stream_prefixes: vec!["export-rule-".into()],
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.events.iter().map(|e| e.position).collect::<Vec<_>>(), [3, 4]);

    let status = client.get_event(pb::GetEventRequest { event_id: "xyz".into() }).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["event_id".to_owned()]));
    let status = client
        .subscribe(pb::SubscribeRequest { event_types: vec!["nope".into()], ..Default::default() })
        .await
        .expect_err("rejected");
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["event_types[0]".to_owned()]));
    server.stop().await;
}

/// Times and dates outside protobuf's Timestamp range (years 1 to 9999) would be stored and
/// then answered as values no client can decode: every one a request carries is refused.
#[tokio::test]
async fn times_and_dates_outside_the_range_of_a_protobuf_timestamp_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let at = |seconds, nanos| pb::ProposedEvent {
        effective_time: Some(prost_types::Timestamp { seconds, nanos }),
        ..member_joined("KR")
    };
    // Just past 9999-12-31T23:59:59.999999999Z, just before 0001-01-01T00:00:00Z, and the
    // year -29719 of the report.
    for (seconds, nanos) in [(253_402_300_800, 0), (-62_135_596_801, 999_999_999), (-999_999_999_999, 0)] {
        check_invalid(&mut client, append(vec![at(seconds, nanos)]), "events[0].effective_time").await;
    }
    check_invalid(&mut client, append(vec![member_joined("KR"), at(i64::MAX, 0)]), "events[1].effective_time").await;
    // The ends of the range are accepted and read back as given.
    let ends = [(253_402_300_799, 999_999_999), (-62_135_596_800, 0)];
    let mut request = append(vec![at(ends[0].0, ends[0].1), at(ends[1].0, ends[1].1)]);
    request.events[1].data = member_joined("DE").data;
    client.append(request.clone()).await.unwrap();
    for (event, (seconds, nanos)) in request.events.iter().zip(ends) {
        let read = client.get_event(pb::GetEventRequest { event_id: event.event_id.clone() }).await.unwrap();
        assert_eq!(read.into_inner().effective_time, Some(prost_types::Timestamp { seconds, nanos }));
    }

    let mut query = pax_ledger::proto::v1::query_service_client::QueryServiceClient::new(server.channel().await);
    let far = Some(pb::Consistency {
        as_of_time: Some(prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 }),
        ..Default::default()
    });
    let status = query
        .get_member(pb::GetMemberRequest { code: "JP".into(), consistency: far })
        .await
        .expect_err("an as-of time past year 9999");
    assert_eq!(
        (status.code(), violated_fields(&status)),
        (Code::InvalidArgument, vec!["consistency.as_of_time".into()])
    );
    let status = query
        .list_members(pb::ListMembersRequest { consistency: far, ..Default::default() })
        .await
        .expect_err("an as-of time past year 9999");
    assert_eq!(
        (status.code(), violated_fields(&status)),
        (Code::InvalidArgument, vec!["consistency.as_of_time".into()])
    );
    let status = query
        .list_export_rules(pb::ListExportRulesRequest { effective_on: "0000-12-31".into(), ..Default::default() })
        .await
        .expect_err("a date of the year 0");
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["effective_on".into()]));
    let status = query
        .list_commitments(pb::ListCommitmentsRequest { on: "0000-12-31".into(), ..Default::default() })
        .await
        .expect_err("a date of the year 0");
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["on".into()]));
    for on in ["0001-01-01", "9999-12-31"] {
        query.list_commitments(pb::ListCommitmentsRequest { on: on.into(), ..Default::default() }).await.unwrap();
    }
    server.stop().await;
}

/// Ids are answered in canonical form (hyphenated, lower case) only, so only that form is
/// accepted: an idempotent retry spelled otherwise would not be recognised by its client.
#[tokio::test]
async fn ids_are_accepted_in_canonical_form_only() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let committed = member_joined("JP");
    client.append(append(vec![committed.clone()])).await.unwrap();
    for spelling in other_spellings(&id()) {
        check_invalid(&mut client, append(vec![with_id(member_joined("KR"), &spelling)]), "events[0].event_id").await;
        let project = project_identified(&spelling, "JP", &[]);
        check_invalid(&mut client, append(vec![project]), "events[0].data.project_identified.project_id").await;
        let commitment = commitment_made(&spelling, "JP");
        check_invalid(&mut client, append(vec![commitment]), "events[0].data.commitment_made.commitment_id").await;
    }
    let mut audit = pax_ledger::proto::v1::audit_service_client::AuditServiceClient::new(server.channel().await);
    let mut query = pax_ledger::proto::v1::query_service_client::QueryServiceClient::new(server.channel().await);
    for spelling in other_spellings(&committed.event_id) {
        let status = client.get_event(pb::GetEventRequest { event_id: spelling.clone() }).await.unwrap_err();
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["event_id".into()]));
        let status = audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                target: Some(pb::get_inclusion_proof_request::Target::EventId(spelling.clone())),
                tree_size: 1,
            })
            .await
            .unwrap_err();
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["event_id".into()]));
        let status =
            query.get_project(pb::GetProjectRequest { project_id: spelling, ..Default::default() }).await.unwrap_err();
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["project_id".into()]));
    }
    // The canonical spelling works everywhere.
    let read = client.get_event(pb::GetEventRequest { event_id: committed.event_id.clone() }).await.unwrap();
    assert_eq!(read.into_inner().position, 1);
    assert_eq!(head_position(&mut client).await, 1);
    server.stop().await;
}

/// An error quotes at most 200 characters of a bad value: quoting all of it outgrew HTTP/2's
/// header limit, and the client saw INTERNAL ("h2 protocol error") instead of the real code.
#[tokio::test]
async fn an_error_about_a_huge_value_keeps_its_code_and_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let check = |status: tonic::Status, field: &str| {
        assert_eq!(
            (status.code(), violated_fields(&status)),
            (Code::InvalidArgument, vec![field.to_owned()]),
            "{field}"
        );
        // The quoted value is cut after 200 characters, whatever its size.
        assert!(status.message().contains("xxx…\""), "{field}: {}", status.message());
        assert!(!status.message().contains(&"x".repeat(201)), "{field}");
        assert!(status.message().len() < 1000, "{field}: {} bytes", status.message().len());
    };
    let ten_kb = format!("member-{}", "x".repeat(10_000));
    let status =
        client.read_stream(pb::ReadStreamRequest { stream: ten_kb.clone(), ..Default::default() }).await.unwrap_err();
    check(status, "stream");
    let status = client.read_all(pb::ReadAllRequest { event_types: vec![ten_kb], ..Default::default() }).await;
    check(status.unwrap_err(), "event_types[0]");

    let mut query = pax_ledger::proto::v1::query_service_client::QueryServiceClient::new(server.channel().await);
    let long_code = "x".repeat(10_000);
    let status = query.get_member(pb::GetMemberRequest { code: long_code.clone(), ..Default::default() }).await;
    check(status.unwrap_err(), "code");
    let status =
        query.list_commitments(pb::ListCommitmentsRequest { member: long_code.clone(), ..Default::default() }).await;
    check(status.unwrap_err(), "member");
    let status =
        query.list_export_rules(pb::ListExportRulesRequest { effective_on: long_code, ..Default::default() }).await;
    check(status.unwrap_err(), "effective_on");

    // A multi-megabyte field of an append (within the request size limit).
    let huge = "x".repeat(3 * 1024 * 1024);
    let status = client.append(append(vec![with_id(member_joined("KR"), &huge)])).await.unwrap_err();
    check(status, "events[0].event_id");
    let status = client.append(append(vec![joined_with("KR", |m| m.code = huge.clone())])).await.unwrap_err();
    check(status, "events[0].data.member_joined.code");
    let status = client.append(append(vec![rule_with(|r| r.rule_id = huge.clone())])).await.unwrap_err();
    check(status, "events[0].data.export_rule_changed.rule_id");
    let expectation = pb::StreamExpectation { stream: huge.clone(), expected: None };
    let status = client.append(append_expecting(vec![member_joined("KR")], vec![expectation])).await.unwrap_err();
    check(status, "expectations[0].stream");
    assert_eq!(head_position(&mut client).await, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_expected_revision_is_aborted_with_the_actual_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let change = || export_rule_changed("us-cn-aborted", pb::Treatment::Prohibited, None);
    let stream = "export-rule-us-cn-aborted";
    client.append(append(vec![change(), change(), change()])).await.unwrap();
    client.append(append(vec![member_joined("JP")])).await.unwrap();

    check_wrong_revision(
        &mut client,
        append_expecting(vec![change()], vec![expect_revision(stream, 1)]),
        stream,
        "1",
        "2",
    )
    .await;
    check_wrong_revision(
        &mut client,
        append_expecting(vec![change()], vec![expect_revision(stream, 7)]),
        stream,
        "7",
        "2",
    )
    .await;
    check_wrong_revision(
        &mut client,
        append_expecting(vec![change()], vec![expect_state(stream, pb::ExpectedState::NoStream)]),
        stream,
        "no_stream",
        "2",
    )
    .await;
    check_wrong_revision(
        &mut client,
        append_expecting(
            vec![member_role_changed("JP", pb::MemberRole::Guest)],
            vec![expect_state("member-JP", pb::ExpectedState::NoStream)],
        ),
        "member-JP",
        "no_stream",
        "0",
    )
    .await;
    check_wrong_revision(
        &mut client,
        append_expecting(vec![member_joined("KR")], vec![expect_state("member-KR", pb::ExpectedState::Exists)]),
        "member-KR",
        "exists",
        "none",
    )
    .await;
    check_wrong_revision(
        &mut client,
        append_expecting(vec![member_joined("KR")], vec![expect_revision("member-KR", 0)]),
        "member-KR",
        "0",
        "none",
    )
    .await;
    // A failing expectation on another stream stops events on a stream whose expectation holds.
    check_wrong_revision(
        &mut client,
        append_expecting(
            vec![change(), member_joined("DE")],
            vec![expect_revision(stream, 2), expect_revision("member-JP", 3)],
        ),
        "member-JP",
        "3",
        "0",
    )
    .await;
    // The message says it too, for people.
    let status = client.append(append_expecting(vec![change()], vec![expect_revision(stream, 0)])).await.unwrap_err();
    assert!(status.message().contains("revision 2"), "{}", status.message());
    server.stop().await;
}

#[tokio::test]
async fn broken_domain_rules_are_failed_precondition() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let project = id();
    let commitment = id();
    client
        .append(append(vec![
            member_joined("JP"),
            member_joined_as("KR", pb::MemberRole::Guest),
            member_joined("DE"),
            member_withdrew("DE"),
            project_identified(&project, "JP", &["KR"]),
            project_status_changed(&project, pb::ProjectStatus::Approved),
            commitment_made(&commitment, "JP"),
            commitment_fulfilled(&commitment),
        ]))
        .await
        .unwrap();
    use pb::ProjectStatus::{Approved, Identified};
    let cases: Vec<(pb::AppendRequest, usize, &str)> = vec![
        (append(vec![member_joined("JP")]), 0, "already joined"),
        (append(vec![member_joined("DE")]), 0, "already joined"),
        (append(vec![member_role_changed("ZZ", pb::MemberRole::Guest)]), 0, "has not joined"),
        (append(vec![member_role_changed("JP", pb::MemberRole::Member)]), 0, "already has the role"),
        (append(vec![member_withdrew("ZZ")]), 0, "has not joined"),
        (append(vec![project_identified(&id(), "ZZ", &[])]), 0, "project host ZZ has not joined"),
        (append(vec![project_identified(&id(), "JP", &["KR", "ZZ"])]), 0, "project partner ZZ has not joined"),
        (append(vec![project_identified(&id(), "DE", &[])]), 0, "withdrawn"),
        (append(vec![project_status_changed(&project, Identified)]), 0, "cannot move back"),
        (append(vec![project_status_changed(&project, Approved)]), 0, "already approved"),
        (append(vec![project_status_changed(&id(), Approved)]), 0, "has not been identified"),
        (append(vec![commitment_made(&id(), "KR")]), 0, "KR is a guest"),
        (append(vec![commitment_made(&id(), "ZZ")]), 0, "has not joined"),
        (append(vec![commitment_made(&id(), "DE")]), 0, "withdrawn"),
        (append(vec![commitment_fulfilled(&commitment)]), 0, "already fulfilled"),
        (append(vec![commitment_withdrawn(&commitment)]), 0, "already fulfilled"),
        (append(vec![commitment_fulfilled(&id())]), 0, "has not been made"),
        (append(vec![summit_convened("2025-12-12", "JP", &["ZZ"])]), 0, "summit participant ZZ"),
        (
            append(vec![summit_convened("2025-12-13", "JP", &[]), summit_convened("2025-12-13", "JP", &["KR"])]),
            1,
            "already been convened",
        ),
        (append(vec![member_role_changed("DE", pb::MemberRole::Guest)]), 0, "member DE has withdrawn"),
        (
            append(vec![
                export_rule_changed("us-cn-route", pb::Treatment::Allowed, None),
                rule_with(|r| {
                    r.rule_id = "us-cn-route".into();
                    r.destination = "RU".into();
                }),
            ]),
            1,
            "a change cannot cover",
        ),
        (
            append(vec![
                project_status_changed(&project, pb::ProjectStatus::Completed),
                project_status_changed(&project, pb::ProjectStatus::Cancelled),
            ]),
            1,
            "which is final",
        ),
        // The broken rule's index is named; earlier events of the batch are not written.
        (
            append(vec![
                export_rule_changed("fp", pb::Treatment::Allowed, None),
                member_joined("FR"),
                member_joined("JP"),
            ]),
            2,
            "already joined",
        ),
        // Rules see the earlier events of the same request.
        (append(vec![member_joined("FR"), member_joined("FR")]), 1, "already joined"),
        (append(vec![member_joined("FR"), member_withdrew("FR"), commitment_made(&id(), "FR")]), 2, "withdrawn"),
        (
            append(vec![
                commitment_made(&commitment_id_for_twice(), "JP"),
                commitment_fulfilled(&commitment_id_for_twice()),
                commitment_fulfilled(&commitment_id_for_twice()),
            ]),
            2,
            "already fulfilled",
        ),
    ];
    for (request, index, reason) in cases {
        check_rule_broken(&mut client, request, index, reason).await;
    }
    assert_eq!(head_position(&mut client).await, 8);
    server.stop().await;
}

/// One fixed commitment id, so that a batch can name the same commitment three times.
fn commitment_id_for_twice() -> String {
    "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a".into()
}

#[tokio::test]
async fn a_committed_event_id_with_other_content_is_already_exists() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = member_joined("FR");
    client.append(append(vec![member_joined("JP"), original.clone()])).await.unwrap();

    let mut renamed = original.clone();
    let Some(Kind::MemberJoined(m)) = renamed.data.as_mut().and_then(|d| d.kind.as_mut()) else { unreachable!() };
    m.name = "République française".into();
    let committed = [original.event_id.as_str()];
    let status = rejected_except(&mut client, append(vec![renamed]), Code::AlreadyExists, &committed).await;
    assert_eq!(error_info_metadata(&status)["position"], "2");
    let stored =
        client.get_event(pb::GetEventRequest { event_id: original.event_id.clone() }).await.unwrap().into_inner();
    assert_eq!(stored.data, original.data, "the committed content is unchanged");

    // Another stream altogether under the same id.
    let request = append(vec![with_id(member_joined("DE"), &original.event_id)]);
    let status = rejected_except(&mut client, request, Code::AlreadyExists, &committed).await;
    assert_eq!(error_info_metadata(&status)["position"], "2");

    // Mixing a committed id (identical content) with new events: refused, the new ones not written.
    let fresh = member_joined("IT");
    let request = append(vec![fresh.clone(), original.clone()]);
    let status = rejected_except(&mut client, request, Code::AlreadyExists, &committed).await;
    assert_eq!(error_info_metadata(&status)["position"], "2");
    assert_eq!(read_stream_all(&mut client, "member-IT").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(head_position(&mut client).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn unknown_events_and_empty_streams_are_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let status = client.get_event(pb::GetEventRequest { event_id: id() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .read_stream(pb::ReadStreamRequest { stream: "member-ZZ".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let status = client.get_event(pb::GetEventRequest { event_id: id() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    for stream in ["member-ZZ", "member-JA", "member-JPN"] {
        let status = client
            .read_stream(pb::ReadStreamRequest {
                stream: stream.into(),
                direction: pb::ReadDirection::Backward as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{stream}");
    }
    server.stop().await;
}

#[tokio::test]
async fn too_many_events_or_too_large_a_record_is_resource_exhausted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let rules =
        |n: usize| (0..n).map(|_| export_rule_changed("bulk", pb::Treatment::Allowed, None)).collect::<Vec<_>>();

    let status = rejected(&mut client, append(rules(1001)), Code::ResourceExhausted).await;
    assert!(status.message().contains("1001"), "{}", status.message());
    let response = client.append(append(rules(1000))).await.unwrap().into_inner();
    assert_eq!(response.events.last().map(|e| (e.position, e.revision)), Some((1001, 999)));

    // Every field within its limit (counted in characters), yet a record of four-byte characters
    // exceeds the record size limit.
    let wide = '\u{1D11E}'.to_string();
    let mut huge = commitment_with(|c| c.description = wide.repeat(4000));
    huge.metadata = Some(pb::EventMetadata { source: wide.repeat(1000), ..Default::default() });
    let status = rejected(&mut client, append(vec![member_joined("KR"), huge]), Code::ResourceExhausted).await;
    assert!(status.message().contains("events[1]"), "{}", status.message());
    server.stop().await;
}

#[tokio::test]
async fn a_batch_whose_last_event_breaks_a_rule_writes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .append(append(vec![member_joined("JP"), export_rule_changed("atom", pb::Treatment::Allowed, None)]))
        .await
        .unwrap();
    let before = read_all(&mut client).await;

    let commitment = id();
    let project = id();
    let good = vec![
        member_joined("KR"),
        export_rule_changed("atom", pb::Treatment::Prohibited, None),
        export_rule_changed("atom-new", pb::Treatment::Prohibited, None),
        commitment_made(&commitment, "KR"),
        project_identified(&project, "JP", &["KR"]),
    ];
    let mut bad = good.clone();
    bad.push(project_identified(&id(), "ZZ", &[]));
    check_rule_broken(&mut client, append(bad), 5, "ZZ").await;

    assert_eq!(read_all(&mut client).await, before);
    assert_eq!(head_position(&mut client).await, 2);
    for stream in
        ["member-KR", "export-rule-atom-new", &format!("commitment-{commitment}"), &format!("project-{project}")]
    {
        let status = read_stream_all(&mut client, stream).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{stream} exists after a rejected batch");
    }
    let atom = read_stream_all(&mut client, "export-rule-atom").await.unwrap();
    assert_eq!(atom.len(), 1);

    // The same batch without the bad event goes through, right after the head: the rejected
    // request consumed no position and no revision.
    let response = client.append(append(good)).await.unwrap().into_inner();
    let places: Vec<_> = response.events.iter().map(|e| (e.revision, e.position)).collect();
    assert_eq!(places, [(0, 3), (1, 4), (0, 5), (0, 6), (0, 7)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_inside_a_busy_concurrent_load_write_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .append(append(vec![member_joined("JP"), export_rule_changed("busy", pb::Treatment::Allowed, None)]))
        .await
        .unwrap();
    const WRITERS: usize = 8;
    const APPENDS: usize = 40;
    const SPOILERS: usize = 4;
    const REJECTS: usize = 25;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut client = server.client().await;
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..APPENDS {
                let event = export_rule_changed(&format!("busy-{w}"), pb::Treatment::Allowed, None);
                let response = client.append(append(vec![event.clone()])).await.unwrap().into_inner();
                assert_eq!(response.events[0].revision, n as u64);
                acked.push((event.event_id, response.events[0].position));
            }
            acked
        }));
    }
    let mut spoilers = Vec::new();
    for s in 0..SPOILERS {
        let mut client = server.client().await;
        spoilers.push(tokio::spawn(async move {
            let mut refused = Vec::new();
            for n in 0..REJECTS {
                // Each request would create new streams, then fails in its last event or check.
                let code = format!("Q{}", char::from(b'A' + (s * REJECTS + n) as u8 % 26));
                let rule = format!("spoiled-{s}-{n}");
                let mut events = vec![export_rule_changed(&rule, pb::Treatment::Allowed, None)];
                let (request, expected) = match n % 3 {
                    0 => {
                        events.push(member_joined("JP"));
                        (append(events), Code::FailedPrecondition)
                    }
                    1 => (append_expecting(events, vec![expect_revision("export-rule-busy", 5)]), Code::Aborted),
                    _ => {
                        events.push(commitment_made(&id(), &code));
                        (append(events), Code::FailedPrecondition)
                    }
                };
                let status = client.append(request.clone()).await.expect_err("a spoiler is rejected");
                assert_eq!(status.code(), expected, "{status:?}");
                refused.push((request, rule));
            }
            refused
        }));
    }
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(tokio::time::timeout(Duration::from_secs(60), writer).await.expect("writers finish").unwrap());
    }
    let mut refused = Vec::new();
    for spoiler in spoilers {
        refused.extend(tokio::time::timeout(Duration::from_secs(60), spoiler).await.expect("spoilers finish").unwrap());
    }

    let log = read_all(&mut client).await;
    let total = 2 + WRITERS * APPENDS;
    assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=total as u64).collect::<Vec<_>>());
    let logged: HashSet<_> = log.iter().map(|e| (e.event_id.clone(), e.position)).collect();
    for ack in &acked {
        assert!(logged.contains(ack), "acknowledged {ack:?} is not in the log at its position");
    }
    let logged_ids: HashSet<_> = log.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(logged_ids.len(), total);
    for (request, rule) in &refused {
        for event in &request.events {
            assert!(!logged_ids.contains(&event.event_id), "a rejected event was written");
        }
        let status = read_stream_all(&mut client, &format!("export-rule-{rule}")).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "stream {rule} exists");
    }
    assert_eq!(refused.len(), SPOILERS * REJECTS);
    server.stop().await;
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_resource_exhausted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    // One event whose name alone is larger than the largest request the server decodes
    // (server::REQUEST_BYTES_MAX, 16 MiB).
    let oversized = joined_with("KR", |m| m.name = "n".repeat(pax_ledger::server::REQUEST_BYTES_MAX + 1024));
    let status = client.append(append(vec![oversized])).await.expect_err("an oversized request is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "DESIGN.md §4: request too large; {}", status.message());
    let mut client = server.client().await;
    assert_eq!(head_position(&mut client).await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_append_queue_is_resource_exhausted_and_writes_nothing_of_the_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = pax_ledger::ledger::LedgerConfig { append_queue_max: 1, ..Default::default() };
    let server = TestServer::start_with(dir.path(), config).await;
    let mut client = server.client().await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for round in 0..20 {
        let mut tasks = Vec::new();
        for n in 0..32 {
            let mut client = LedgerServiceClient::new(server.channel().await);
            let event = export_rule_changed(&format!("queue-{round}-{n}"), pb::Treatment::Allowed, None);
            tasks.push(tokio::spawn(async move { (event.event_id.clone(), client.append(append(vec![event])).await) }));
        }
        for task in tasks {
            let (event_id, result) =
                tokio::time::timeout(Duration::from_secs(30), task).await.expect("in time").unwrap();
            match result {
                Ok(response) => accepted.push((event_id, response.into_inner().events[0].position)),
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert!(status.message().contains("queue is full"), "{}", status.message());
                    refused.push(event_id);
                }
            }
        }
        if !refused.is_empty() {
            break;
        }
    }
    assert!(!refused.is_empty(), "a queue of one never overflowed under 32 concurrent appends");
    let log = read_all(&mut client).await;
    let logged: HashSet<_> = log.iter().map(|e| (e.event_id.clone(), e.position)).collect();
    assert_eq!(logged, accepted.iter().cloned().collect::<HashSet<_>>());
    assert!(refused.iter().all(|id| log.iter().all(|e| &e.event_id != id)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_very_many_expectations_is_answered_promptly() {
    // 40,000 distinct expectations: a 1.1 MB request, well within the 16 MiB size limit. Whether the
    // server takes it or refuses it as too large, it must answer in a few seconds rather than
    // spend its CPU on the request's own size.
    const EXPECTATIONS: usize = 40_000;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let expectations: Vec<_> =
        (0..EXPECTATIONS).map(|i| expect_state(&format!("export-rule-many-{i}"), pb::ExpectedState::Any)).collect();
    let request = append_expecting(vec![export_rule_changed("many", pb::Treatment::Allowed, None)], expectations);
    let answer = tokio::time::timeout(Duration::from_secs(5), client.append(request)).await;
    let answer = answer.expect("an append with 40,000 expectations is answered within 5 s");
    if let Err(status) = answer {
        assert!(matches!(status.code(), Code::ResourceExhausted | Code::InvalidArgument), "{status:?}");
    }
    server.stop().await;
}

// ------------------------------------------------------------------------------------------
// Malformed requests to every service, on a ledger with principals

/// One malformed request to one method (sent with the admin's token, so that authorization
/// never decides the answer).
enum Malformed {
    Append(pb::AppendRequest),
    ReadStream(pb::ReadStreamRequest),
    ReadAll(pb::ReadAllRequest),
    GetEvent(pb::GetEventRequest),
    Subscribe(pb::SubscribeRequest),
    GetMember(pb::GetMemberRequest),
    ListMembers(pb::ListMembersRequest),
    GetProject(pb::GetProjectRequest),
    ListProjects(pb::ListProjectsRequest),
    GetExportRule(pb::GetExportRuleRequest),
    ListExportRules(pb::ListExportRulesRequest),
    ListCommitments(pb::ListCommitmentsRequest),
    GetSummary(pb::GetSummaryRequest),
    ListSummits(pb::ListSummitsRequest),
    GetCheckpoint(pb::GetCheckpointRequest),
    GetInclusionProof(pb::GetInclusionProofRequest),
    GetConsistencyProof(pb::GetConsistencyProofRequest),
    GetViewProof(pb::GetViewProofRequest),
    ExportLog(pb::ExportLogRequest),
    Grant(pb::GrantRequest),
    Revoke(pb::RevokeRequest),
    IssueToken(pb::IssueTokenRequest),
    BindCertificate(pb::BindCertificateRequest),
    RegisterSigningKey(pb::RegisterSigningKeyRequest),
    RevokeCredential(pb::RevokeCredentialRequest),
    /// Bytes that do not decode as the request message of the method at this path.
    Undecodable(&'static str, &'static [u8]),
}

impl Malformed {
    /// The service the request goes to.
    fn service(&self) -> &'static str {
        use Malformed::*;
        match self {
            Append(_) | ReadStream(_) | ReadAll(_) | GetEvent(_) | Subscribe(_) => "LedgerService",
            GetMember(_) | ListMembers(_) | GetProject(_) | ListProjects(_) | GetExportRule(_) | ListExportRules(_)
            | ListCommitments(_) | GetSummary(_) | ListSummits(_) => "QueryService",
            GetCheckpoint(_) | GetInclusionProof(_) | GetConsistencyProof(_) | GetViewProof(_) | ExportLog(_) => {
                "AuditService"
            }
            Grant(_) | Revoke(_) | IssueToken(_) | BindCertificate(_) | RegisterSigningKey(_) | RevokeCredential(_) => {
                "AccessService"
            }
            Undecodable(path, _) => {
                let service = path.trim_start_matches("/pax.ledger.v1.").split('/').next().unwrap();
                ["LedgerService", "QueryService", "ProjectionService", "AuditService", "AccessService"]
                    .into_iter()
                    .find(|s| *s == service)
                    .unwrap_or_else(|| panic!("{path} is not a method of pax.ledger.v1"))
            }
        }
    }

    /// Sends the request as `token`'s principal: `Ok` if the server accepted it (for a response
    /// stream: if it sent a first message), else its status.
    async fn send(self, channel: &Channel, token: &str) -> Result<(), tonic::Status> {
        use crate::access::authed;
        use Malformed::*;
        use pb::access_service_client::AccessServiceClient;
        use pb::audit_service_client::AuditServiceClient;
        use pb::query_service_client::QueryServiceClient;
        let ledger = || LedgerServiceClient::new(channel.clone());
        let query = || QueryServiceClient::new(channel.clone());
        let audit = || AuditServiceClient::new(channel.clone());
        let access = || AccessServiceClient::new(channel.clone());
        match self {
            Append(r) => ledger().append(authed(r, token)).await.map(drop),
            ReadStream(r) => ledger().read_stream(authed(r, token)).await.map(drop),
            ReadAll(r) => ledger().read_all(authed(r, token)).await.map(drop),
            GetEvent(r) => ledger().get_event(authed(r, token)).await.map(drop),
            Subscribe(r) => {
                let mut stream = ledger().subscribe(authed(r, token)).await?.into_inner();
                tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("a first message")
                    .map(drop)
            }
            GetMember(r) => query().get_member(authed(r, token)).await.map(drop),
            ListMembers(r) => query().list_members(authed(r, token)).await.map(drop),
            GetProject(r) => query().get_project(authed(r, token)).await.map(drop),
            ListProjects(r) => query().list_projects(authed(r, token)).await.map(drop),
            GetExportRule(r) => query().get_export_rule(authed(r, token)).await.map(drop),
            ListExportRules(r) => query().list_export_rules(authed(r, token)).await.map(drop),
            ListCommitments(r) => query().list_commitments(authed(r, token)).await.map(drop),
            GetSummary(r) => query().get_summary(authed(r, token)).await.map(drop),
            ListSummits(r) => query().list_summits(authed(r, token)).await.map(drop),
            GetCheckpoint(r) => audit().get_checkpoint(authed(r, token)).await.map(drop),
            GetInclusionProof(r) => audit().get_inclusion_proof(authed(r, token)).await.map(drop),
            GetConsistencyProof(r) => audit().get_consistency_proof(authed(r, token)).await.map(drop),
            GetViewProof(r) => audit().get_view_proof(authed(r, token)).await.map(drop),
            ExportLog(r) => {
                let mut stream = audit().export_log(authed(r, token)).await?.into_inner();
                tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("a first message")
                    .map(drop)
            }
            Grant(r) => access().grant(authed(r, token)).await.map(drop),
            Revoke(r) => access().revoke(authed(r, token)).await.map(drop),
            IssueToken(r) => access().issue_token(authed(r, token)).await.map(drop),
            BindCertificate(r) => access().bind_certificate(authed(r, token)).await.map(drop),
            RegisterSigningKey(r) => access().register_signing_key(authed(r, token)).await.map(drop),
            RevokeCredential(r) => access().revoke_credential(authed(r, token)).await.map(drop),
            Undecodable(path, bytes) => {
                let methods = crate::access::described_methods();
                let method = methods.get(path).unwrap_or_else(|| panic!("no method {path}"));
                crate::access::call_raw(channel, method, bytes::Bytes::from_static(bytes), Some(token)).await
            }
        }
    }
}

/// Everything a rejected request must leave as it was: the log, the views and the principals.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: u64,
    durable_head: u64,
    log: Vec<pb::RecordedEvent>,
    views: pb::ProjectionStatus,
    principals: pb::ListPrincipalsResponse,
}

async fn snapshot(secured: &crate::access::Secured) -> Snapshot {
    use crate::access::authed;
    let channel = secured.server.channel().await;
    let token = &secured.admin;
    let request =
        pb::ReadAllRequest { direction: pb::ReadDirection::Backward as i32, page_size: 1, ..Default::default() };
    let head = LedgerServiceClient::new(channel.clone())
        .read_all(authed(request, token))
        .await
        .expect("read the head")
        .into_inner()
        .head_position;
    let views = pb::projection_service_client::ProjectionServiceClient::new(channel.clone())
        .get_projection_status(authed(pb::GetProjectionStatusRequest {}, token))
        .await
        .expect("the views' status")
        .into_inner();
    let principals = pb::access_service_client::AccessServiceClient::new(channel)
        .list_principals(authed(pb::ListPrincipalsRequest {}, token))
        .await
        .expect("the principals")
        .into_inner();
    Snapshot {
        head,
        durable_head: secured.head(),
        log: crate::access::log_as(&secured.server, token).await,
        views,
        principals,
    }
}

/// One table of malformed (and otherwise refused) requests to every service of a ledger with
/// principals, each sent with the admin's token so that authorization never decides the answer:
/// each row names its request, the code expected and the field its `BadRequest` violation must
/// name (`None`: the status carries no `BadRequest`; `Some("")`: bytes that are no protobuf,
/// whose violation names no field). Afterwards the log, the views and the principals are
/// exactly as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_to_every_service_change_nothing() {
    use crate::access::{Secured, authed, without_actor};
    use Malformed::*;
    use pb::get_inclusion_proof_request::Target;
    let secured = Secured::start(pax_ledger::server::Options::default()).await;
    let token = secured.admin.clone();
    let channel = secured.server.channel().await;
    let mut ledger = LedgerServiceClient::new(channel.clone());
    let mut query = pb::query_service_client::QueryServiceClient::new(channel.clone());
    let mut access = pb::access_service_client::AccessServiceClient::new(channel.clone());
    let mut audit = pb::audit_service_client::AuditServiceClient::new(channel.clone());

    // A little of everything: members, a project, a commitment, an export rule, a summit, a
    // second principal with a token, and a signed checkpoint.
    let project = id();
    let commitment = id();
    let seed = [
        member_joined("JP"),
        member_joined_as("KR", pb::MemberRole::Guest),
        project_identified(&project, "JP", &["KR"]),
        commitment_made(&commitment, "JP"),
        export_rule_changed("us-cn-h200", pb::Treatment::Allowed, None),
        summit_convened("2025-12-12", "JP", &["KR"]),
    ];
    let seeded = ledger.append(authed(append(seed.into_iter().map(without_actor).collect()), &token)).await.unwrap();
    let first_seeded = seeded.into_inner().events[0].clone();
    let reader_grant = pb::Grant { role: pb::Role::Reader as i32, scope: String::new() };
    let request =
        pb::GrantRequest { principal: "reader-one".into(), grants: vec![reader_grant.clone()], reason: "test".into() };
    access.grant(authed(request, &token)).await.unwrap();
    let issued = access
        .issue_token(authed(pb::IssueTokenRequest { principal: "reader-one".into() }, &token))
        .await
        .unwrap()
        .into_inner();
    let reader_credential = issued.credential.unwrap();
    let checkpoint = pb::GetCheckpointRequest { position: None, fresh: true };
    audit.get_checkpoint(authed(checkpoint, &token)).await.unwrap();
    let head = secured.head();

    // Page tokens of real queries, to be sent with other ones.
    let members_only =
        pb::ReadAllRequest { page_size: 1, stream_prefixes: vec!["member-".into()], ..Default::default() };
    let read_all_token = ledger.read_all(authed(members_only, &token)).await.unwrap().into_inner().next_page_token;
    assert!(!read_all_token.is_empty());
    let members_page = pb::ListMembersRequest { page_size: 1, ..Default::default() };
    let members_token = query.list_members(authed(members_page, &token)).await.unwrap().into_inner().next_page_token;
    assert!(!members_token.is_empty());

    // The views caught up with the log before anything is recorded as "before".
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let before = loop {
        let snapshot = snapshot(&secured).await;
        if snapshot.views.position == head && snapshot.views.log_position == head && snapshot.head == head {
            break snapshot;
        }
        assert!(std::time::Instant::now() < deadline, "the views did not reach {head}: {:?}", snapshot.views);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(before.principals.principals.len(), 2, "{:?}", before.principals);

    // Requests built from parts.
    let no_scope = |role: pb::Role| pb::Grant { role: role as i32, scope: String::new() };
    let scoped = |role: pb::Role, scope: &str| pb::Grant { role: role as i32, scope: scope.into() };
    let grant = |principal: &str, grants: Vec<pb::Grant>| {
        Grant(pb::GrantRequest { principal: principal.into(), grants, reason: "test".into() })
    };
    let revoke = |principal: &str, grants: Vec<pb::Grant>| {
        Revoke(pb::RevokeRequest { principal: principal.into(), grants, reason: "test".into() })
    };
    let access_event = |kind: Kind| Append(append(vec![without_actor(event(kind))]));
    let as_of = |position: u64| Some(pb::Consistency { as_of_position: Some(position), ..Default::default() });
    let at_time = |seconds: i64, nanos: i32| {
        Some(pb::Consistency { as_of_time: Some(prost_types::Timestamp { seconds, nanos }), ..Default::default() })
    };
    let upper = first_seeded.event_id.to_uppercase();
    let sixty_five_codes: Vec<pb::Grant> = (0..65u8)
        .map(|i| scoped(pb::Role::Delegate, &format!("{}{}", char::from(b'A' + i / 26), char::from(b'A' + i % 26))))
        .collect();

    let table: Vec<(&str, Malformed, Code, Option<&str>)> = vec![
        // LedgerService.Append
        ("append of no event", Append(append(vec![])), Code::InvalidArgument, Some("events")),
        (
            "append with an event id that is no UUID",
            Append(append(vec![without_actor(with_id(member_joined("DE"), "not-a-uuid"))])),
            Code::InvalidArgument,
            Some("events[0].event_id"),
        ),
        (
            "append with a signature of 63 bytes",
            Append(append(vec![with_signature(member_joined("DE"), vec![0; 32], vec![0; 63])])),
            Code::InvalidArgument,
            Some("events[0].metadata.signature.signature"),
        ),
        (
            "append with a signing key of 31 bytes",
            Append(append(vec![with_signature(member_joined("DE"), vec![0; 31], vec![0; 64])])),
            Code::InvalidArgument,
            Some("events[0].metadata.signature.public_key"),
        ),
        (
            "append with a signature that does not verify",
            Append(append(vec![with_signature(
                member_joined("DE"),
                hex::decode_vec(SIGNING_PUBLIC_KEY).unwrap(),
                vec![7; 64],
            )])),
            Code::InvalidArgument,
            Some("events[0].metadata.signature"),
        ),
        (
            "append of an unspecified member role",
            Append(append(vec![without_actor(joined_with("DE", |m| m.role = 0))])),
            Code::InvalidArgument,
            Some("events[0].data.member_joined.role"),
        ),
        (
            "append of a lower-case member code",
            Append(append(vec![without_actor(joined_with("DE", |m| m.code = "de".into()))])),
            Code::InvalidArgument,
            Some("events[0].data.member_joined.code"),
        ),
        (
            "append of a levy on an allowed rule",
            Append(append(vec![without_actor(rule_with(|r| r.levy_bps = Some(5)))])),
            Code::InvalidArgument,
            Some("events[0].data.export_rule_changed.levy_bps"),
        ),
        (
            "append of a commitment due on 30 February",
            Append(append(vec![without_actor(commitment_with(|c| c.due_on = "2026-02-30".into()))])),
            Code::InvalidArgument,
            Some("events[0].data.commitment_made.due_on"),
        ),
        (
            "append of no event data",
            Append(append(vec![pb::ProposedEvent { data: None, ..without_actor(member_joined("DE")) }])),
            Code::InvalidArgument,
            Some("events[0].data"),
        ),
        (
            "append of access_granted",
            access_event(Kind::AccessGranted(pb::AccessGranted {
                principal: "intruder".into(),
                grants: vec![no_scope(pb::Role::Admin)],
                reason: String::new(),
            })),
            Code::InvalidArgument,
            Some("events[0].data.access_granted"),
        ),
        (
            "append of credential_issued",
            access_event(Kind::CredentialIssued(pb::CredentialIssued {
                principal: "admin".into(),
                credential: Some(reader_credential.clone()),
            })),
            Code::InvalidArgument,
            Some("events[0].data.credential_issued"),
        ),
        (
            "append of access_revoked after a valid event",
            Append(append(vec![
                without_actor(member_joined("DE")),
                without_actor(event(Kind::AccessRevoked(pb::AccessRevoked {
                    principal: "admin".into(),
                    grants: vec![no_scope(pb::Role::Admin)],
                    reason: String::new(),
                }))),
            ])),
            Code::InvalidArgument,
            Some("events[1].data.access_revoked"),
        ),
        (
            // `member_joined` proposes its event under the actor "test".
            "append under another actor than the caller",
            Append(append(vec![member_joined("DE")])),
            Code::PermissionDenied,
            None,
        ),
        (
            "append with a malformed expectation",
            Append(append_expecting(vec![without_actor(member_joined("DE"))], vec![expect_revision("member-de", 0)])),
            Code::InvalidArgument,
            Some("expectations[0].stream"),
        ),
        (
            "append of a member already joined",
            Append(append(vec![without_actor(member_joined("JP"))])),
            Code::FailedPrecondition,
            None,
        ),
        (
            "append expecting a wrong revision",
            Append(append_expecting(vec![without_actor(member_joined("DE"))], vec![expect_revision("member-JP", 3)])),
            Code::Aborted,
            None,
        ),
        // events[0].event_id is the byte 0xFF: not UTF-8.
        (
            "append that is not protobuf",
            Undecodable("/pax.ledger.v1.LedgerService/Append", &[0x0a, 0x03, 0x0a, 0x01, 0xff]),
            Code::InvalidArgument,
            Some("events.event_id"),
        ),
        // LedgerService reads
        (
            "read of a lower-case stream",
            ReadStream(pb::ReadStreamRequest { stream: "member-jp".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("stream"),
        ),
        (
            "read of a stream of no kind",
            ReadStream(pb::ReadStreamRequest { stream: "nonsense".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("stream"),
        ),
        (
            "read of a stream, limit 1001",
            ReadStream(pb::ReadStreamRequest { stream: "member-JP".into(), limit: 1001, ..Default::default() }),
            Code::InvalidArgument,
            Some("limit"),
        ),
        (
            "read of a stream, direction 5",
            ReadStream(pb::ReadStreamRequest { stream: "member-JP".into(), direction: 5, ..Default::default() }),
            Code::InvalidArgument,
            Some("direction"),
        ),
        (
            "read of a stream with no event",
            ReadStream(pb::ReadStreamRequest { stream: "member-ZZ".into(), ..Default::default() }),
            Code::NotFound,
            None,
        ),
        (
            "read of the log, page size 1001",
            ReadAll(pb::ReadAllRequest { page_size: 1001, ..Default::default() }),
            Code::InvalidArgument,
            Some("page_size"),
        ),
        (
            "read of the log, direction 2",
            ReadAll(pb::ReadAllRequest { direction: 2, ..Default::default() }),
            Code::InvalidArgument,
            Some("direction"),
        ),
        (
            "read of the log, unknown event type",
            ReadAll(pb::ReadAllRequest {
                event_types: vec!["member_joined".into(), "member_left".into()],
                ..Default::default()
            }),
            Code::InvalidArgument,
            Some("event_types[1]"),
        ),
        (
            "read of the log, empty prefix",
            ReadAll(pb::ReadAllRequest { stream_prefixes: vec![String::new()], ..Default::default() }),
            Code::InvalidArgument,
            Some("stream_prefixes[0]"),
        ),
        (
            "read of the log, 65 prefixes",
            ReadAll(pb::ReadAllRequest { stream_prefixes: vec!["member-".into(); 65], ..Default::default() }),
            Code::InvalidArgument,
            Some("stream_prefixes"),
        ),
        (
            "read of the log, a token that is none",
            ReadAll(pb::ReadAllRequest { page_token: "not a token".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("page_token"),
        ),
        (
            "read of the log, another query's token",
            ReadAll(pb::ReadAllRequest { page_token: read_all_token.clone(), ..Default::default() }),
            Code::InvalidArgument,
            Some("page_token"),
        ),
        (
            "get of an event id that is no UUID",
            GetEvent(pb::GetEventRequest { event_id: "xyz".into() }),
            Code::InvalidArgument,
            Some("event_id"),
        ),
        (
            "get of an upper-case event id",
            GetEvent(pb::GetEventRequest { event_id: upper.clone() }),
            Code::InvalidArgument,
            Some("event_id"),
        ),
        ("get of an unknown event", GetEvent(pb::GetEventRequest { event_id: id() }), Code::NotFound, None),
        (
            "subscription to an unknown event type",
            Subscribe(pb::SubscribeRequest { event_types: vec!["nope".into()], ..Default::default() }),
            Code::InvalidArgument,
            Some("event_types[0]"),
        ),
        (
            "subscription with an empty prefix",
            Subscribe(pb::SubscribeRequest {
                stream_prefixes: vec!["member-".into(), String::new()],
                ..Default::default()
            }),
            Code::InvalidArgument,
            Some("stream_prefixes[1]"),
        ),
        (
            "subscription to 65 event types",
            Subscribe(pb::SubscribeRequest { event_types: vec!["member_joined".into(); 65], ..Default::default() }),
            Code::InvalidArgument,
            Some("event_types"),
        ),
        // QueryService
        (
            "member of a lower-case code",
            GetMember(pb::GetMemberRequest { code: "jp".into(), consistency: None }),
            Code::InvalidArgument,
            Some("code"),
        ),
        (
            "member of no code",
            GetMember(pb::GetMemberRequest { code: String::new(), consistency: None }),
            Code::InvalidArgument,
            Some("code"),
        ),
        (
            "member never joined",
            GetMember(pb::GetMemberRequest { code: "ZZ".into(), consistency: None }),
            Code::NotFound,
            None,
        ),
        (
            "member as of a position past the head",
            GetMember(pb::GetMemberRequest { code: "JP".into(), consistency: as_of(head + 1) }),
            Code::OutOfRange,
            None,
        ),
        (
            "member as of a position and a time",
            GetMember(pb::GetMemberRequest {
                code: "JP".into(),
                consistency: Some(pb::Consistency {
                    as_of_position: Some(1),
                    as_of_time: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
                    ..Default::default()
                }),
            }),
            Code::InvalidArgument,
            Some("consistency.as_of_time"),
        ),
        (
            "member as of the year 10000",
            GetMember(pb::GetMemberRequest { code: "JP".into(), consistency: at_time(253_402_300_800, 0) }),
            Code::InvalidArgument,
            Some("consistency.as_of_time"),
        ),
        (
            "members, page size -1",
            ListMembers(pb::ListMembersRequest { page_size: -1, ..Default::default() }),
            Code::InvalidArgument,
            Some("page_size"),
        ),
        (
            "members of role 9",
            ListMembers(pb::ListMembersRequest { role: 9, ..Default::default() }),
            Code::InvalidArgument,
            Some("role"),
        ),
        (
            "members of kind 7",
            ListMembers(pb::ListMembersRequest { kind: 7, ..Default::default() }),
            Code::InvalidArgument,
            Some("kind"),
        ),
        (
            "members, a token that is none",
            ListMembers(pb::ListMembersRequest { page_token: "00".repeat(12), ..Default::default() }),
            Code::InvalidArgument,
            Some("page_token"),
        ),
        (
            "members, the token of other filters",
            ListMembers(pb::ListMembersRequest {
                page_size: 1,
                page_token: members_token.clone(),
                include_withdrawn: true,
                ..Default::default()
            }),
            Code::InvalidArgument,
            Some("page_token"),
        ),
        (
            "project of an id that is no UUID",
            GetProject(pb::GetProjectRequest { project_id: "not-a-uuid".into(), consistency: None }),
            Code::InvalidArgument,
            Some("project_id"),
        ),
        (
            "project of an upper-case id",
            GetProject(pb::GetProjectRequest { project_id: project.to_uppercase(), consistency: None }),
            Code::InvalidArgument,
            Some("project_id"),
        ),
        (
            "project never identified",
            GetProject(pb::GetProjectRequest { project_id: id(), consistency: None }),
            Code::NotFound,
            None,
        ),
        (
            "projects of pillar 99",
            ListProjects(pb::ListProjectsRequest { pillar: 99, ..Default::default() }),
            Code::InvalidArgument,
            Some("pillar"),
        ),
        (
            "projects of status 42",
            ListProjects(pb::ListProjectsRequest { status: 42, ..Default::default() }),
            Code::InvalidArgument,
            Some("status"),
        ),
        (
            "projects of member J",
            ListProjects(pb::ListProjectsRequest { member: "J".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("member"),
        ),
        (
            "export rule of a bad id",
            GetExportRule(pb::GetExportRuleRequest { rule_id: "US_CN".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("rule_id"),
        ),
        (
            "export rule on month 13",
            GetExportRule(pb::GetExportRuleRequest {
                rule_id: "us-cn-h200".into(),
                effective_on: "2025-13-01".into(),
                consistency: None,
            }),
            Code::InvalidArgument,
            Some("effective_on"),
        ),
        (
            "export rule before it was in force",
            GetExportRule(pb::GetExportRuleRequest {
                rule_id: "us-cn-h200".into(),
                effective_on: "2000-01-01".into(),
                consistency: None,
            }),
            Code::NotFound,
            None,
        ),
        (
            "export rules from origin usa",
            ListExportRules(pb::ListExportRulesRequest { origin: "usa".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("origin"),
        ),
        (
            "export rules to x",
            ListExportRules(pb::ListExportRulesRequest { destination: "x".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("destination"),
        ),
        (
            "export rules of treatment 9",
            ListExportRules(pb::ListExportRulesRequest { treatment: 9, ..Default::default() }),
            Code::InvalidArgument,
            Some("treatment"),
        ),
        (
            "export rules in force in the year 0",
            ListExportRules(pb::ListExportRulesRequest { effective_on: "0000-12-31".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("effective_on"),
        ),
        (
            "commitments of status 9",
            ListCommitments(pb::ListCommitmentsRequest { status: 9, ..Default::default() }),
            Code::InvalidArgument,
            Some("status"),
        ),
        (
            "commitments of project nope",
            ListCommitments(pb::ListCommitmentsRequest { project_id: "nope".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("project_id"),
        ),
        (
            "commitments overdue on 2026/01/01",
            ListCommitments(pb::ListCommitmentsRequest { on: "2026/01/01".into(), ..Default::default() }),
            Code::InvalidArgument,
            Some("on"),
        ),
        (
            "commitments of pillar -1",
            ListCommitments(pb::ListCommitmentsRequest { pillar: -1, ..Default::default() }),
            Code::InvalidArgument,
            Some("pillar"),
        ),
        (
            "summary on the year 0",
            GetSummary(pb::GetSummaryRequest { on: "0000-01-01".into(), consistency: None }),
            Code::InvalidArgument,
            Some("on"),
        ),
        (
            "summary as of negative nanos",
            GetSummary(pb::GetSummaryRequest { on: String::new(), consistency: at_time(1_765_152_000, -1) }),
            Code::InvalidArgument,
            Some("consistency.as_of_time"),
        ),
        (
            "summits, page size -5",
            ListSummits(pb::ListSummitsRequest { page_size: -5, ..Default::default() }),
            Code::InvalidArgument,
            Some("page_size"),
        ),
        (
            "summits as of a position past the head",
            ListSummits(pb::ListSummitsRequest { consistency: as_of(u64::MAX), ..Default::default() }),
            Code::OutOfRange,
            None,
        ),
        (
            "summits, a token of members",
            ListSummits(pb::ListSummitsRequest { page_size: 1, page_token: members_token.clone(), consistency: None }),
            Code::InvalidArgument,
            Some("page_token"),
        ),
        // ProjectionService: its requests have no field; only bytes that are not protobuf are malformed.
        (
            "status request with field number 0",
            Undecodable("/pax.ledger.v1.ProjectionService/GetProjectionStatus", &[0x00]),
            Code::InvalidArgument,
            Some(""),
        ),
        (
            "status request with wire type 7",
            Undecodable("/pax.ledger.v1.ProjectionService/GetProjectionStatus", &[0x0f]),
            Code::InvalidArgument,
            Some(""),
        ),
        (
            "rebuild request cut short",
            Undecodable("/pax.ledger.v1.ProjectionService/RebuildProjections", &[0x0a, 0x05, 0x01]),
            Code::InvalidArgument,
            Some(""),
        ),
        // AuditService
        (
            "checkpoint past the head",
            GetCheckpoint(pb::GetCheckpointRequest { position: Some(head + 1), fresh: false }),
            Code::OutOfRange,
            None,
        ),
        (
            "checkpoint at a position and fresh",
            GetCheckpoint(pb::GetCheckpointRequest { position: Some(1), fresh: true }),
            Code::InvalidArgument,
            Some("fresh"),
        ),
        (
            "inclusion proof of nothing",
            GetInclusionProof(pb::GetInclusionProofRequest { target: None, tree_size: 0 }),
            Code::InvalidArgument,
            Some("target"),
        ),
        (
            "inclusion proof of position 0",
            GetInclusionProof(pb::GetInclusionProofRequest { target: Some(Target::Position(0)), tree_size: 0 }),
            Code::InvalidArgument,
            Some("target"),
        ),
        (
            "inclusion proof of an event id that is no UUID",
            GetInclusionProof(pb::GetInclusionProofRequest {
                target: Some(Target::EventId("nope".into())),
                tree_size: 0,
            }),
            Code::InvalidArgument,
            Some("event_id"),
        ),
        (
            "inclusion proof of an upper-case event id",
            GetInclusionProof(pb::GetInclusionProofRequest {
                target: Some(Target::EventId(upper.clone())),
                tree_size: 0,
            }),
            Code::InvalidArgument,
            Some("event_id"),
        ),
        (
            "inclusion proof of an unknown event",
            GetInclusionProof(pb::GetInclusionProofRequest { target: Some(Target::EventId(id())), tree_size: 0 }),
            Code::NotFound,
            None,
        ),
        (
            "inclusion proof of a position past the head",
            GetInclusionProof(pb::GetInclusionProofRequest { target: Some(Target::Position(head + 1)), tree_size: 0 }),
            Code::OutOfRange,
            None,
        ),
        (
            "inclusion proof in a tree past the head",
            GetInclusionProof(pb::GetInclusionProofRequest { target: Some(Target::Position(1)), tree_size: head + 1 }),
            Code::OutOfRange,
            None,
        ),
        (
            "inclusion proof in a tree smaller than the position",
            GetInclusionProof(pb::GetInclusionProofRequest { target: Some(Target::Position(head)), tree_size: 1 }),
            Code::OutOfRange,
            None,
        ),
        (
            "consistency proof from a larger tree to a smaller",
            GetConsistencyProof(pb::GetConsistencyProofRequest { old_size: head, new_size: 1 }),
            Code::OutOfRange,
            None,
        ),
        (
            "consistency proof from past the head",
            GetConsistencyProof(pb::GetConsistencyProofRequest { old_size: head + 1, new_size: 0 }),
            Code::OutOfRange,
            None,
        ),
        (
            "consistency proof to past the head",
            GetConsistencyProof(pb::GetConsistencyProofRequest { old_size: 1, new_size: head + 5 }),
            Code::OutOfRange,
            None,
        ),
        (
            "view proof of a stream name that is no stream",
            GetViewProof(pb::GetViewProofRequest { stream: "member-jp".into(), tree_size: 0 }),
            Code::InvalidArgument,
            Some("stream"),
        ),
        (
            "view proof of a member that never joined",
            GetViewProof(pb::GetViewProofRequest { stream: "member-ZQ".into(), tree_size: 0 }),
            Code::NotFound,
            None,
        ),
        (
            "view proof at a size past the head",
            GetViewProof(pb::GetViewProofRequest { stream: "member-JP".into(), tree_size: head + 5 }),
            Code::OutOfRange,
            None,
        ),
        (
            "export after a position past the head",
            ExportLog(pb::ExportLogRequest { after_position: head + 1, after_hash: vec![] }),
            Code::OutOfRange,
            None,
        ),
        (
            "export after a hash of 31 bytes",
            ExportLog(pb::ExportLogRequest { after_position: 1, after_hash: vec![0; 31] }),
            Code::InvalidArgument,
            Some("after_hash"),
        ),
        (
            "export after a hash of another history",
            ExportLog(pb::ExportLogRequest { after_position: 1, after_hash: vec![0; 32] }),
            Code::FailedPrecondition,
            None,
        ),
        (
            "export request cut short",
            Undecodable("/pax.ledger.v1.AuditService/ExportLog", &[0x08]),
            Code::InvalidArgument,
            Some("after_position"),
        ),
        (
            "verification request cut short",
            Undecodable("/pax.ledger.v1.AuditService/VerifyLedger", &[0x08]),
            Code::InvalidArgument,
            Some(""),
        ),
        // AccessService
        (
            "grant of role 42",
            grant("reader-two", vec![scoped(pb::Role::Reader, ""), pb::Grant { role: 42, scope: String::new() }]),
            Code::InvalidArgument,
            Some("grants[1].role"),
        ),
        (
            "grant of no role",
            grant("reader-two", vec![no_scope(pb::Role::Unspecified)]),
            Code::InvalidArgument,
            Some("grants[0].role"),
        ),
        (
            "grant of a scope on an unscoped role",
            grant("reader-two", vec![scoped(pb::Role::Reader, "JP")]),
            Code::InvalidArgument,
            Some("grants[0].scope"),
        ),
        (
            "grant of a delegate with no scope",
            grant("jp-delegation", vec![no_scope(pb::Role::Delegate)]),
            Code::InvalidArgument,
            Some("grants[0].scope"),
        ),
        (
            "grant of an authority for usa",
            grant("us-authority", vec![scoped(pb::Role::Authority, "usa")]),
            Code::InvalidArgument,
            Some("grants[0].scope"),
        ),
        (
            "grant to a bad principal name",
            grant("Reader Two", vec![no_scope(pb::Role::Reader)]),
            Code::InvalidArgument,
            Some("principal"),
        ),
        (
            "grant to the bootstrap actor",
            grant("(bootstrap)", vec![no_scope(pb::Role::Admin)]),
            Code::InvalidArgument,
            Some("principal"),
        ),
        (
            "grant of a role twice",
            grant(
                "reader-two",
                vec![no_scope(pb::Role::Reader), no_scope(pb::Role::Auditor), no_scope(pb::Role::Reader)],
            ),
            Code::InvalidArgument,
            Some("grants[2]"),
        ),
        ("grant of 65 grants", grant("jp-delegation", sixty_five_codes), Code::InvalidArgument, Some("grants")),
        ("grant of nothing", grant("reader-two", vec![]), Code::InvalidArgument, Some("grants")),
        (
            "grant with a reason of 1001 characters",
            Grant(pb::GrantRequest {
                principal: "reader-two".into(),
                grants: vec![no_scope(pb::Role::Reader)],
                reason: "r".repeat(1001),
            }),
            Code::InvalidArgument,
            Some("reason"),
        ),
        (
            "grant with a control character in its reason",
            Grant(pb::GrantRequest {
                principal: "reader-two".into(),
                grants: vec![no_scope(pb::Role::Reader)],
                reason: "bell\u{7}".into(),
            }),
            Code::InvalidArgument,
            Some("reason"),
        ),
        (
            "grant of a role already held",
            grant("reader-one", vec![reader_grant.clone()]),
            Code::FailedPrecondition,
            None,
        ),
        (
            "revoke of a grant not held",
            revoke("reader-one", vec![no_scope(pb::Role::Operator)]),
            Code::FailedPrecondition,
            None,
        ),
        ("revoke of everything of nobody", revoke("nobody", vec![]), Code::NotFound, None),
        ("revoke of a grant of nobody", revoke("nobody", vec![no_scope(pb::Role::Reader)]), Code::NotFound, None),
        (
            "certificate for nobody",
            BindCertificate(pb::BindCertificateRequest { principal: "nobody".into(), fingerprint: "a".repeat(64) }),
            Code::NotFound,
            None,
        ),
        (
            "revoke from a bad principal name",
            revoke("reader_one", vec![reader_grant.clone()]),
            Code::InvalidArgument,
            Some("principal"),
        ),
        (
            "revoke of role 42",
            revoke("reader-one", vec![pb::Grant { role: 42, scope: String::new() }]),
            Code::InvalidArgument,
            Some("grants[0].role"),
        ),
        (
            "token for an unknown principal",
            IssueToken(pb::IssueTokenRequest { principal: "nobody".into() }),
            Code::NotFound,
            None,
        ),
        (
            "token for no principal",
            IssueToken(pb::IssueTokenRequest { principal: String::new() }),
            Code::InvalidArgument,
            Some("principal"),
        ),
        (
            "certificate of a fingerprint that is no hex",
            BindCertificate(pb::BindCertificateRequest {
                principal: "reader-one".into(),
                fingerprint: "zz".repeat(32),
            }),
            Code::InvalidArgument,
            Some("fingerprint"),
        ),
        (
            "certificate of 63 digits",
            BindCertificate(pb::BindCertificateRequest { principal: "reader-one".into(), fingerprint: "a".repeat(63) }),
            Code::InvalidArgument,
            Some("fingerprint"),
        ),
        (
            "certificate for a bad principal name",
            BindCertificate(pb::BindCertificateRequest { principal: "-reader".into(), fingerprint: "a".repeat(64) }),
            Code::InvalidArgument,
            Some("principal"),
        ),
        (
            "signing key for nobody",
            RegisterSigningKey(pb::RegisterSigningKeyRequest {
                principal: "nobody".into(),
                public_key: SIGNING_PUBLIC_KEY.into(),
            }),
            Code::NotFound,
            None,
        ),
        (
            "signing key of 63 digits",
            RegisterSigningKey(pb::RegisterSigningKeyRequest {
                principal: "reader-one".into(),
                public_key: SIGNING_PUBLIC_KEY[1..].into(),
            }),
            Code::InvalidArgument,
            Some("public_key"),
        ),
        (
            // The identity point: of small order, it would "verify" forged signatures.
            "signing key of small order",
            RegisterSigningKey(pb::RegisterSigningKeyRequest {
                principal: "reader-one".into(),
                public_key: format!("01{}", "0".repeat(62)),
            }),
            Code::InvalidArgument,
            Some("public_key"),
        ),
        (
            "signing key for a bad principal name",
            RegisterSigningKey(pb::RegisterSigningKeyRequest {
                principal: "Reader".into(),
                public_key: SIGNING_PUBLIC_KEY.into(),
            }),
            Code::InvalidArgument,
            Some("principal"),
        ),
        (
            "credential revoke by a short id",
            RevokeCredential(pb::RevokeCredentialRequest {
                principal: "reader-one".into(),
                credential: reader_credential.id[..8].into(),
                reason: String::new(),
            }),
            Code::InvalidArgument,
            Some("credential"),
        ),
        // Malformed whatever the principal holds: INVALID_ARGUMENT, not NOT_FOUND.
        (
            "credential revoke by an id that is no hex",
            RevokeCredential(pb::RevokeCredentialRequest {
                principal: "reader-one".into(),
                credential: "z".repeat(16),
                reason: String::new(),
            }),
            Code::InvalidArgument,
            Some("credential"),
        ),
        (
            "credential revoke by 65 digits",
            RevokeCredential(pb::RevokeCredentialRequest {
                principal: "reader-one".into(),
                credential: format!("{}0", reader_credential.digest),
                reason: String::new(),
            }),
            Code::InvalidArgument,
            Some("credential"),
        ),
        (
            "credential revoke of one not held",
            RevokeCredential(pb::RevokeCredentialRequest {
                principal: "admin".into(),
                credential: reader_credential.id.clone(),
                reason: String::new(),
            }),
            Code::NotFound,
            None,
        ),
        (
            "credential revoke of nobody's",
            RevokeCredential(pb::RevokeCredentialRequest {
                principal: "nobody".into(),
                credential: reader_credential.id.clone(),
                reason: String::new(),
            }),
            Code::NotFound,
            None,
        ),
        (
            "principals request with field number 0",
            Undecodable("/pax.ledger.v1.AccessService/ListPrincipals", &[0x00]),
            Code::InvalidArgument,
            Some(""),
        ),
    ];

    let services: BTreeSet<&str> = table.iter().map(|(_, request, _, _)| request.service()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["AccessService", "AuditService", "LedgerService", "ProjectionService", "QueryService"]),
        "the table covers every service"
    );
    assert!(table.len() >= 40, "{} rows", table.len());
    let mut per_service: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (what, request, code, field) in table {
        *per_service.entry(request.service()).or_default() += 1;
        let answer = request.send(&channel, &token).await;
        let Err(status) = answer else {
            failures.push(format!("{what}: accepted"));
            continue;
        };
        let fields = status
            .get_details_bad_request()
            .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect::<Vec<_>>());
        let expected_fields = field.map(|f| vec![f.to_owned()]);
        if status.code() != code || fields != expected_fields {
            failures.push(format!(
                "{what}: expected {code:?} {expected_fields:?}, got {:?} {fields:?}: {}",
                status.code(),
                status.message()
            ));
        }
    }
    eprintln!("malformed requests per service: {per_service:?}");
    assert!(failures.is_empty(), "{} rows answered otherwise:\n{}", failures.len(), failures.join("\n"));

    let after = snapshot(&secured).await;
    assert_eq!(after.head, before.head, "the log's head moved");
    assert_eq!(after.durable_head, before.durable_head, "the durable head moved");
    assert_eq!(after.log, before.log, "the log changed");
    assert_eq!(after.views, before.views, "the views changed");
    assert_eq!(after.principals, before.principals, "the principals changed");
    secured.stop().await;
}

/// `event` (without an actor) carrying the signature bytes given.
fn with_signature(event: pb::ProposedEvent, public_key: Vec<u8>, signature: Vec<u8>) -> pb::ProposedEvent {
    let mut event = crate::access::without_actor(event);
    event.metadata.get_or_insert_default().signature = Some(pb::EventSignature { public_key, signature });
    event
}
