//! `demo`: loads Pax Silica into a running server through the public Append API.
//!
//! What it loads is compiled in: the facts of `seed/FACTS.md` (`examples/pax-silica.jsonl`,
//! every event labelled `illustrative: "false"` and citing the article), then one project per
//! area of the official declaration (`examples/pax-silica-demo.jsonl`). The article names no
//! concrete project, so those four are labelled `illustrative: "true"` and say so in their title,
//! description and source. Every event has a fixed `event_id`, so loading twice changes
//! nothing: the second run finds every event already committed. With a credential (once
//! principals exist), the events leave their actor to the server, which records the
//! authenticated principal (an admin's token may record them all; another principal's, only
//! the events its grants cover, the others being reported as refused).

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::client::{self, Client};
use super::{ClientArgs, Output, query};
use crate::archive::event_line::{self, EventLine};
use crate::proto::v1 as pb;

/// The facts of the article, one event per line.
const FACTS: (&str, &str) = ("examples/pax-silica.jsonl", include_str!("../../examples/pax-silica.jsonl"));
/// The illustrative projects, one per area of the declaration.
const ILLUSTRATIVE: (&str, &str) =
    ("examples/pax-silica-demo.jsonl", include_str!("../../examples/pax-silica-demo.jsonl"));

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The events of a compiled-in file, in order (blank and `#` lines skipped).
fn events_of((name, text): (&str, &str)) -> anyhow::Result<Vec<EventLine>> {
    let lines = text.lines().enumerate().map(|(i, line)| (i + 1, line.trim()));
    let events = lines.filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    events.map(|(number, line)| event_line::parse(number, line).map_err(|e| anyhow::anyhow!("{name}: {e}"))).collect()
}

/// What a run did, as `demo` prints it.
#[derive(Debug, Default, Serialize)]
struct Report {
    /// Events of the demo: facts, then illustrative projects.
    events: usize,
    facts: usize,
    illustrative: usize,
    appended: usize,
    already_present: usize,
    rejected: usize,
    /// The log's head after the load.
    position: u64,
}

/// Appends every demo event, one request each, so that a ledger that already holds some of them
/// (say, the facts loaded with `append`) gets the rest. A rejected event is reported on stderr
/// with its gRPC code and the rest is still sent; the exit status is then non-zero.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let facts = events_of(FACTS)?;
    let illustrative = events_of(ILLUSTRATIVE)?;
    let mut client = client::connect(&args.client).await?;
    let mut report = Report {
        events: facts.len() + illustrative.len(),
        facts: facts.len(),
        illustrative: illustrative.len(),
        ..Report::default()
    };
    for event in facts.iter().chain(&illustrative) {
        let mut proposed = event.event.clone();
        if args.client.presents_credential()
            && let Some(metadata) = proposed.metadata.as_mut()
        {
            // Recorded as the authenticated principal, which the server stamps.
            metadata.actor.clear();
        }
        let request =
            pb::AppendRequest { events: vec![proposed], expectations: event.expectation().into_iter().collect() };
        match client.append(request).await {
            Ok(response) if response.get_ref().already_committed => report.already_present += 1,
            Ok(_) => report.appended += 1,
            Err(status) => {
                report.rejected += 1;
                eprintln!("error: event {} ({}): {}", event.event.event_id, event.stream, query::status_text(&status));
            }
        }
    }
    report.position = head_position(&mut client).await?;
    print(&report, args.client.output)?;
    Ok(if report.rejected == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The log's last position.
async fn head_position(client: &mut Client) -> anyhow::Result<u64> {
    let request =
        pb::ReadAllRequest { direction: pb::ReadDirection::Backward as i32, page_size: 1, ..Default::default() };
    let page = client.read_all(request).await.map_err(|s| anyhow::anyhow!(query::status_text(&s)))?;
    Ok(page.into_inner().head_position)
}

fn print(report: &Report, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string(report)?),
        Output::Table => {
            println!(
                "Pax Silica demo: {} facts from the article (Benzinga, 2025-12-14) and {} illustrative projects \
                 (labelled illustrative: \"true\")",
                report.facts, report.illustrative
            );
            println!(
                "appended {}, already present {}, rejected {}; the log is at position {}",
                report.appended, report.already_present, report.rejected, report.position
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use pb::event_data::Kind;

    fn label<'a>(event: &'a EventLine, key: &str) -> Option<&'a str> {
        event.event.metadata.as_ref()?.labels.get(key).map(String::as_str)
    }

    #[test]
    fn the_facts_are_the_participants_the_summit_and_the_h200_rule() {
        let facts = events_of(FACTS).unwrap();
        let mut joined = Vec::new();
        for event in &facts {
            assert_eq!(label(event, "illustrative"), Some("false"), "{}", event.event.event_id);
            match event.event.data.as_ref().and_then(|d| d.kind.as_ref()) {
                Some(Kind::MemberJoined(m)) => joined.push((m.code.as_str(), m.role)),
                Some(Kind::SummitConvened(s)) => {
                    assert_eq!((s.date.as_str(), s.host.as_str(), s.participants.len()), ("2025-12-11", "US", 13))
                }
                Some(Kind::ExportRuleChanged(r)) => {
                    assert_eq!((r.rule_id.as_str(), r.treatment, r.levy_bps), ("us-cn-nvidia-h200", 2, Some(2500)))
                }
                other => panic!("not a fact of FACTS.md: {other:?}"),
            }
        }
        let codes = |role: pb::MemberRole| -> Vec<&str> {
            joined.iter().filter(|(_, r)| *r == role as i32).map(|(code, _)| *code).collect()
        };
        assert_eq!(codes(pb::MemberRole::Member), ["US", "JP", "KR", "SG", "NL", "IL", "AE", "GB", "AU"]);
        assert_eq!(codes(pb::MemberRole::Guest), ["TW", "EU", "CA", "OECD"]);
        assert_eq!(facts.len(), 15);
    }

    #[test]
    fn the_projects_cover_the_four_areas_and_say_they_are_illustrative() {
        let projects = events_of(ILLUSTRATIVE).unwrap();
        let mut pillars = Vec::new();
        for event in &projects {
            assert_eq!(label(event, "illustrative"), Some("true"));
            let source = &event.event.metadata.as_ref().unwrap().source;
            assert!(source.contains("Benzinga, 2025-12-14") && source.contains("no concrete project"), "{source}");
            let Some(Kind::ProjectIdentified(p)) = event.event.data.as_ref().and_then(|d| d.kind.as_ref()) else {
                panic!("not a project: {event:?}");
            };
            assert_eq!(p.host, "US");
            assert!(p.title.contains("illustrative") && p.description.starts_with("Illustrative"), "{p:?}");
            pillars.push(p.pillar);
        }
        let expected =
            [pb::Pillar::Semiconductors, pb::Pillar::CriticalMinerals, pb::Pillar::Energy, pb::Pillar::AiCompute];
        assert_eq!(pillars, expected.map(|p| p as i32));
    }

    #[test]
    fn every_event_has_its_own_fixed_id() {
        let all: Vec<EventLine> =
            events_of(FACTS).unwrap().into_iter().chain(events_of(ILLUSTRATIVE).unwrap()).collect();
        let ids: HashSet<&str> = all.iter().map(|e| e.event.event_id.as_str()).collect();
        assert!(ids.iter().all(|id| uuid::Uuid::try_parse(id).is_ok()));
        assert_eq!(ids.len(), all.len());
    }
}
