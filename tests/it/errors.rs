//! Every row of the error table (DESIGN.md §4) reached by a real request, with its code and its
//! machine-readable detail, and the atomicity rule: a rejected request writes nothing.

use std::collections::HashSet;
use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pb::event_data::Kind;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::support::*;

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
