//! A property test of the views against a tiny model: random valid and invalid commands (joins,
//! role changes and withdrawals of a small pool of participants, projects hosted by members,
//! guests or strangers, status moves forwards and backwards, export-rule changes on a few rules
//! with their route sometimes changed, commitments made, fulfilled and withdrawn twice, summits)
//! are appended one by one to a real server, which is restarted at random points. The model folds
//! only what the server acknowledged, with its own, independent statement of the views (it uses
//! neither `projection` nor `domain`), and keeps a copy of itself per acknowledged position.
//!
//! After each restart and at the end, every list (all pages), every `Get`, and the summary must
//! equal the model at exactly the last acknowledged position; the projection status must show no
//! lag, and a rebuild must reproduce the live view digest and leave every answer unchanged. The
//! as-of property asks the same questions of earlier positions and compares them with the model
//! as it stood then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pax_ledger::proto::v1::projection_service_client::ProjectionServiceClient;
use pax_ledger::proto::v1::query_service_client::QueryServiceClient;
use pb::event_data::Kind;
use proptest::prelude::*;
use proptest::sample::Index;
use tonic::transport::Channel;

use pax_ledger::domain::Position;
use pax_ledger::ledger::AsOf;

use crate::support::{TestServer, append, event};

/// Participants; the last one never joins (an unknown code).
const CODES: [&str; 5] = ["JP", "KR", "SG", "EU", "XX"];
const JOINABLE: usize = 4;
const PROJECTS: [&str; 3] = [
    "0193a5b0-7c1e-7cc3-9c55-000000000001",
    "0193a5b0-7c1e-7cc3-9c55-000000000002",
    "0193a5b0-7c1e-7cc3-9c55-000000000003",
];
const COMMITMENTS: [&str; 4] = [
    "0193a5b0-7c1e-7cc3-9c55-0000000000c1",
    "0193a5b0-7c1e-7cc3-9c55-0000000000c2",
    "0193a5b0-7c1e-7cc3-9c55-0000000000c3",
    "0193a5b0-7c1e-7cc3-9c55-0000000000c4",
];
const RULES: [&str; 3] = ["us-cn-chips", "nl-cn-litho", "jp-kr-resist"];
/// Each rule's route (item, origin, destination), and the destination of another route that a
/// change of an existing rule may not take.
const ROUTES: [(&str, &str, &str, &str); 3] =
    [("chips", "US", "CN", "AE"), ("lithography", "NL", "CN", "RU"), ("photoresist", "JP", "KR", "TW")];
const EFFECTIVE: [&str; 4] = ["2025-01-15", "2025-06-01", "2025-12-08", "2026-03-01"];
/// Dates asked with `effective_on`: before every change, on one, between, after all.
const EFFECTIVE_PROBES: [&str; 4] = ["2025-01-01", "2025-06-01", "2025-09-30", "2026-12-31"];
const SUMMITS: [&str; 3] = ["2025-12-11", "2026-02-20", "2026-06-15"];
const DUE: [&str; 3] = ["2026-01-31", "2026-06-30", "2026-12-31"];
/// The day "overdue" is judged on: the first due date is before it, the second on it.
const ON: &str = "2026-06-30";
/// A small page, so that most listings take several pages.
const PAGE: i32 = 3;

// ---------------------------------------------------------------------------------------------
// Commands

#[derive(Clone, Debug)]
enum Cmd {
    Join { code: usize, guest: bool, org: bool },
    RoleChange { code: usize, guest: bool },
    Withdraw { code: usize },
    Identify { project: usize, host: usize, partners: Vec<usize>, pillar: i32 },
    Status { project: usize, status: i32 },
    Rule { rule: usize, other_route: bool, treatment: i32, levy: u32, from: usize },
    Commit { commitment: usize, member: usize, pillar: i32, due: usize, project: Option<usize> },
    Fulfil { commitment: usize },
    Retract { commitment: usize },
    Summit { date: usize, host: usize, participants: Vec<usize> },
}

#[derive(Clone, Debug)]
enum Step {
    Send(Cmd),
    Restart,
}

fn pillar() -> impl Strategy<Value = i32> {
    1..=5i32
}

/// A participant's code: mostly one that may join, sometimes the one that never does.
fn code() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 0..JOINABLE, 1 => Just(JOINABLE)]
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        5 => (0..JOINABLE, any::<bool>(), prop::bool::weighted(0.25))
            .prop_map(|(code, guest, org)| Cmd::Join { code, guest, org }),
        2 => (code(), any::<bool>()).prop_map(|(code, guest)| Cmd::RoleChange { code, guest }),
        1 => code().prop_map(|code| Cmd::Withdraw { code }),
        3 => (0..PROJECTS.len(), code(), prop::collection::btree_set(code(), 0..3), pillar())
            .prop_map(|(project, host, partners, pillar)| Cmd::Identify {
                project,
                host,
                partners: partners.into_iter().filter(|p| *p != host).collect(),
                pillar,
            }),
        3 => (0..PROJECTS.len(), 1..=5i32).prop_map(|(project, status)| Cmd::Status { project, status }),
        3 => (0..RULES.len(), prop::bool::weighted(0.2), 1..=4i32, 0..=10_000u32, 0..EFFECTIVE.len())
            .prop_map(|(rule, other_route, treatment, levy, from)| Cmd::Rule { rule, other_route, treatment, levy, from }),
        4 => (0..COMMITMENTS.len(), code(), pillar(), 0..DUE.len(), prop::option::of(0..PROJECTS.len()))
            .prop_map(|(commitment, member, pillar, due, project)| Cmd::Commit {
                commitment,
                member,
                pillar,
                due,
                project
            }),
        2 => (0..COMMITMENTS.len()).prop_map(|commitment| Cmd::Fulfil { commitment }),
        2 => (0..COMMITMENTS.len()).prop_map(|commitment| Cmd::Retract { commitment }),
        2 => (0..SUMMITS.len(), code(), prop::collection::btree_set(code(), 0..3))
            .prop_map(|(date, host, participants)| Cmd::Summit { date, host, participants: participants.into_iter().collect() }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![25 => cmd().prop_map(Step::Send), 1 => Just(Step::Restart)]
}

fn codes(indices: &[usize]) -> Vec<String> {
    indices.iter().map(|&i| CODES[i].to_owned()).collect()
}

fn route(rule: usize, other: bool) -> (String, String, String) {
    let (item, origin, destination, other_destination) = ROUTES[rule];
    (item.to_owned(), origin.to_owned(), if other { other_destination } else { destination }.to_owned())
}

fn levy(treatment: i32, levy: u32) -> Option<u32> {
    (treatment == pb::Treatment::AllowedWithLevy as i32).then_some(levy)
}

/// The command as the wire says it.
fn proposed(cmd: &Cmd) -> pb::ProposedEvent {
    event(match cmd {
        Cmd::Join { code, guest, org } => Kind::MemberJoined(pb::MemberJoined {
            code: CODES[*code].into(),
            name: format!("Participant {}", CODES[*code]),
            kind: (if *org { pb::MemberKind::Organization } else { pb::MemberKind::State }) as i32,
            role: role(*guest),
        }),
        Cmd::RoleChange { code, guest } => {
            Kind::MemberRoleChanged(pb::MemberRoleChanged { code: CODES[*code].into(), role: role(*guest) })
        }
        Cmd::Withdraw { code } => {
            Kind::MemberWithdrew(pb::MemberWithdrew { code: CODES[*code].into(), reason: "model".into() })
        }
        Cmd::Identify { project, host, partners, pillar } => Kind::ProjectIdentified(pb::ProjectIdentified {
            project_id: PROJECTS[*project].into(),
            title: format!("Project {project}"),
            pillar: *pillar,
            host: CODES[*host].into(),
            partners: codes(partners),
            companies: vec!["ACME".into()],
            description: "model".into(),
        }),
        Cmd::Status { project, status } => Kind::ProjectStatusChanged(pb::ProjectStatusChanged {
            project_id: PROJECTS[*project].into(),
            status: *status,
            reason: "model".into(),
        }),
        Cmd::Rule { rule, other_route, treatment, levy: bps, from } => {
            let (item, origin, destination) = route(*rule, *other_route);
            Kind::ExportRuleChanged(pb::ExportRuleChanged {
                rule_id: RULES[*rule].into(),
                item,
                origin,
                destination,
                treatment: *treatment,
                levy_bps: levy(*treatment, *bps),
                effective_from: EFFECTIVE[*from].into(),
                authority: "model authority".into(),
            })
        }
        Cmd::Commit { commitment, member, pillar, due, project } => Kind::CommitmentMade(pb::CommitmentMade {
            commitment_id: COMMITMENTS[*commitment].into(),
            member: CODES[*member].into(),
            pillar: *pillar,
            description: "model commitment".into(),
            project_id: project.map(|p| PROJECTS[p].to_owned()),
            due_on: DUE[*due].into(),
        }),
        Cmd::Fulfil { commitment } => Kind::CommitmentFulfilled(pb::CommitmentFulfilled {
            commitment_id: COMMITMENTS[*commitment].into(),
            evidence: "model evidence".into(),
        }),
        Cmd::Retract { commitment } => Kind::CommitmentWithdrawn(pb::CommitmentWithdrawn {
            commitment_id: COMMITMENTS[*commitment].into(),
            reason: "model".into(),
        }),
        Cmd::Summit { date, host, participants } => Kind::SummitConvened(pb::SummitConvened {
            date: SUMMITS[*date].into(),
            host: CODES[*host].into(),
            chair: "Model chair".into(),
            participants: codes(participants),
            location: "Model city".into(),
        }),
    })
}

fn role(guest: bool) -> i32 {
    (if guest { pb::MemberRole::Guest } else { pb::MemberRole::Member }) as i32
}

// ---------------------------------------------------------------------------------------------
// The model

/// The events behind an entity: (position, event type), in log order.
type Changes = Vec<(u64, &'static str)>;

#[derive(Clone, Debug)]
struct Member {
    name: String,
    kind: i32,
    role: i32,
    withdrawn: bool,
    role_history: Vec<i32>,
    changes: Changes,
}

#[derive(Clone, Debug)]
struct Project {
    host: String,
    partners: Vec<String>,
    pillar: i32,
    status: i32,
    status_history: Vec<i32>,
    changes: Changes,
}

/// The terms one change of an export rule set.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Terms {
    item: String,
    origin: String,
    destination: String,
    treatment: i32,
    levy_bps: Option<u32>,
    effective_from: String,
}

#[derive(Clone, Debug)]
struct Rule {
    /// Every change's terms, in log order; the last is the current one.
    timeline: Vec<Terms>,
    changes: Changes,
}

#[derive(Clone, Debug)]
struct Commitment {
    member: String,
    pillar: i32,
    due_on: String,
    project_id: String,
    status: i32,
    changes: Changes,
}

#[derive(Clone, Debug)]
struct Summit {
    host: String,
    participants: Vec<String>,
    changes: Changes,
}

/// The views as the model folds them, keyed by the entity's id.
#[derive(Clone, Debug, Default)]
struct Model {
    members: BTreeMap<String, Member>,
    projects: BTreeMap<String, Project>,
    rules: BTreeMap<String, Rule>,
    commitments: BTreeMap<String, Commitment>,
    summits: BTreeMap<String, Summit>,
}

impl Model {
    /// A participant that has joined and not withdrawn.
    fn current(&self, code: usize) -> Option<&Member> {
        self.members.get(CODES[code]).filter(|m| !m.withdrawn)
    }

    /// Whether the ledger must accept `cmd` (the rules, stated again from the design and the
    /// proto comments): used only to make sure the ledger refuses what it should, the model
    /// itself folds only what the ledger acknowledged.
    fn allows(&self, cmd: &Cmd) -> bool {
        match cmd {
            Cmd::Join { code, .. } => !self.members.contains_key(CODES[*code]),
            Cmd::RoleChange { code, guest } => self.current(*code).is_some_and(|m| m.role != role(*guest)),
            Cmd::Withdraw { code } => self.current(*code).is_some(),
            Cmd::Identify { project, host, partners, .. } => {
                !self.projects.contains_key(PROJECTS[*project])
                    && self.current(*host).is_some()
                    && partners.iter().all(|p| self.current(*p).is_some())
            }
            Cmd::Status { project, status } => self.projects.get(PROJECTS[*project]).is_some_and(|p| {
                let (from, to) = (p.status, *status);
                let finished = [pb::ProjectStatus::Completed as i32, pb::ProjectStatus::Cancelled as i32];
                !finished.contains(&from) && to != from && (to == pb::ProjectStatus::Cancelled as i32 || to > from)
            }),
            Cmd::Rule { rule, other_route, .. } => self.rules.get(RULES[*rule]).is_none_or(|r| {
                let last = r.timeline.last().expect("a rule has a change");
                (last.item.clone(), last.origin.clone(), last.destination.clone()) == route(*rule, *other_route)
            }),
            Cmd::Commit { commitment, member, .. } => {
                !self.commitments.contains_key(COMMITMENTS[*commitment])
                    && self.current(*member).is_some_and(|m| m.role == pb::MemberRole::Member as i32)
            }
            Cmd::Fulfil { commitment } | Cmd::Retract { commitment } => self
                .commitments
                .get(COMMITMENTS[*commitment])
                .is_some_and(|c| c.status == pb::CommitmentStatus::Open as i32),
            Cmd::Summit { date, host, participants } => {
                !self.summits.contains_key(SUMMITS[*date])
                    && self.current(*host).is_some()
                    && participants.iter().all(|p| self.current(*p).is_some())
            }
        }
    }

    /// Folds a command the ledger acknowledged at `position`.
    fn apply(&mut self, cmd: &Cmd, position: u64) {
        match cmd {
            Cmd::Join { code, guest, org } => {
                let kind = (if *org { pb::MemberKind::Organization } else { pb::MemberKind::State }) as i32;
                self.members.insert(
                    CODES[*code].to_owned(),
                    Member {
                        name: format!("Participant {}", CODES[*code]),
                        kind,
                        role: role(*guest),
                        withdrawn: false,
                        role_history: vec![role(*guest)],
                        changes: vec![(position, "member_joined")],
                    },
                );
            }
            Cmd::RoleChange { code, guest } => {
                let m = self.members.get_mut(CODES[*code]).expect("acknowledged: the member exists");
                m.role = role(*guest);
                m.role_history.push(m.role);
                m.changes.push((position, "member_role_changed"));
            }
            Cmd::Withdraw { code } => {
                let m = self.members.get_mut(CODES[*code]).expect("acknowledged: the member exists");
                m.withdrawn = true;
                m.changes.push((position, "member_withdrew"));
            }
            Cmd::Identify { project, host, partners, pillar } => {
                let identified = pb::ProjectStatus::Identified as i32;
                self.projects.insert(
                    PROJECTS[*project].to_owned(),
                    Project {
                        host: CODES[*host].to_owned(),
                        partners: codes(partners),
                        pillar: *pillar,
                        status: identified,
                        status_history: vec![identified],
                        changes: vec![(position, "project_identified")],
                    },
                );
            }
            Cmd::Status { project, status } => {
                let p = self.projects.get_mut(PROJECTS[*project]).expect("acknowledged: the project exists");
                p.status = *status;
                p.status_history.push(*status);
                p.changes.push((position, "project_status_changed"));
            }
            Cmd::Rule { rule, other_route, treatment, levy: bps, from } => {
                let (item, origin, destination) = route(*rule, *other_route);
                let terms = Terms {
                    item,
                    origin,
                    destination,
                    treatment: *treatment,
                    levy_bps: levy(*treatment, *bps),
                    effective_from: EFFECTIVE[*from].to_owned(),
                };
                let r = self
                    .rules
                    .entry(RULES[*rule].to_owned())
                    .or_insert_with(|| Rule { timeline: vec![], changes: vec![] });
                r.timeline.push(terms);
                r.changes.push((position, "export_rule_changed"));
            }
            Cmd::Commit { commitment, member, pillar, due, project } => {
                self.commitments.insert(
                    COMMITMENTS[*commitment].to_owned(),
                    Commitment {
                        member: CODES[*member].to_owned(),
                        pillar: *pillar,
                        due_on: DUE[*due].to_owned(),
                        project_id: project.map(|p| PROJECTS[p].to_owned()).unwrap_or_default(),
                        status: pb::CommitmentStatus::Open as i32,
                        changes: vec![(position, "commitment_made")],
                    },
                );
            }
            Cmd::Fulfil { commitment } => {
                let c = self.commitments.get_mut(COMMITMENTS[*commitment]).expect("acknowledged: it was made");
                c.status = pb::CommitmentStatus::Fulfilled as i32;
                c.changes.push((position, "commitment_fulfilled"));
            }
            Cmd::Retract { commitment } => {
                let c = self.commitments.get_mut(COMMITMENTS[*commitment]).expect("acknowledged: it was made");
                c.status = pb::CommitmentStatus::Withdrawn as i32;
                c.changes.push((position, "commitment_withdrawn"));
            }
            Cmd::Summit { date, host, participants } => {
                self.summits.insert(
                    SUMMITS[*date].to_owned(),
                    Summit {
                        host: CODES[*host].to_owned(),
                        participants: codes(participants),
                        changes: vec![(position, "summit_convened")],
                    },
                );
            }
        }
    }

    fn entities(&self) -> u64 {
        (self.members.len() + self.projects.len() + self.rules.len() + self.commitments.len() + self.summits.len())
            as u64
    }

    fn members(&self, include_withdrawn: bool) -> Vec<MemberRow> {
        self.members
            .iter()
            .filter(|(_, m)| include_withdrawn || !m.withdrawn)
            .map(|(code, m)| MemberRow {
                code: code.clone(),
                name: m.name.clone(),
                kind: m.kind,
                role: m.role,
                withdrawn: m.withdrawn,
                role_history: m.role_history.clone(),
                provenance: provenance(format!("member-{code}"), &m.changes),
            })
            .collect()
    }

    fn projects(&self) -> Vec<ProjectRow> {
        self.projects
            .iter()
            .map(|(id, p)| ProjectRow {
                project_id: id.clone(),
                host: p.host.clone(),
                partners: p.partners.clone(),
                pillar: p.pillar,
                status: p.status,
                status_history: p.status_history.clone(),
                provenance: provenance(format!("project-{id}"), &p.changes),
            })
            .collect()
    }

    /// The rules with the terms in force on `effective_on` (the change with the latest
    /// `effective_from` on or before it, the later recorded winning a tie), or the latest terms.
    fn rules(&self, effective_on: Option<&str>) -> Vec<RuleRow> {
        self.rules
            .iter()
            .filter_map(|(id, r)| {
                let terms = match effective_on {
                    None => r.timeline.last(),
                    Some(date) => r
                        .timeline
                        .iter()
                        .filter(|t| t.effective_from.as_str() <= date)
                        .max_by_key(|t| &t.effective_from),
                }?;
                Some(RuleRow {
                    rule_id: id.clone(),
                    terms: terms.clone(),
                    changes: r.changes.len() as u64,
                    provenance: provenance(format!("export-rule-{id}"), &r.changes),
                })
            })
            .collect()
    }

    fn commitments(&self) -> Vec<CommitmentRow> {
        self.commitments
            .iter()
            .map(|(id, c)| CommitmentRow {
                commitment_id: id.clone(),
                member: c.member.clone(),
                pillar: c.pillar,
                due_on: c.due_on.clone(),
                project_id: c.project_id.clone(),
                status: c.status,
                overdue: c.status == pb::CommitmentStatus::Open as i32 && c.due_on.as_str() < ON,
                provenance: provenance(format!("commitment-{id}"), &c.changes),
            })
            .collect()
    }

    fn summits(&self) -> Vec<SummitRow> {
        self.summits
            .iter()
            .map(|(date, s)| SummitRow {
                date: date.clone(),
                host: s.host.clone(),
                participants: s.participants.clone(),
                provenance: provenance(format!("summit-{date}"), &s.changes),
            })
            .collect()
    }

    /// The summary's non-zero counts, as `section.key`.
    fn summary(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        let mut add = |section: &str, key: &str| *counts.entry(format!("{section}.{key}")).or_insert(0) += 1;
        for m in self.members.values() {
            if m.withdrawn {
                add("members_withdrawn", "");
            } else {
                add("members_by_role", role_name(m.role));
            }
        }
        for p in self.projects.values() {
            add("projects_by_pillar", pillar_name(p.pillar));
            add("projects_by_status", project_status_name(p.status));
        }
        for c in self.commitments.values() {
            add("commitments_by_status", commitment_status_name(c.status));
            add("commitments_by_pillar", pillar_name(c.pillar));
            if c.status == pb::CommitmentStatus::Open as i32 && c.due_on.as_str() < ON {
                add("commitments_overdue", "");
            }
        }
        for r in self.rules.values() {
            add("export_rules_by_treatment", treatment_name(r.timeline.last().expect("a change").treatment));
        }
        for _ in self.summits.values() {
            add("summits", "");
        }
        counts
    }
}

fn role_name(role: i32) -> &'static str {
    ["?", "member", "guest"][role as usize]
}

fn pillar_name(pillar: i32) -> &'static str {
    ["?", "semiconductors", "critical_minerals", "energy", "ai_compute", "networks"][pillar as usize]
}

fn project_status_name(status: i32) -> &'static str {
    ["?", "identified", "approved", "under_way", "completed", "cancelled"][status as usize]
}

fn commitment_status_name(status: i32) -> &'static str {
    ["?", "open", "fulfilled", "withdrawn"][status as usize]
}

fn treatment_name(treatment: i32) -> &'static str {
    ["?", "allowed", "allowed_with_levy", "license_required", "prohibited"][treatment as usize]
}

// ---------------------------------------------------------------------------------------------
// What is compared: the fields the model knows, from the wire or from the model.

/// (stream, revision, first position, last position).
type Prov = (String, u64, u64, u64);

fn provenance(stream: String, changes: &Changes) -> Prov {
    let first = changes.first().expect("an entity has an event").0;
    let last = changes.last().expect("an entity has an event").0;
    (stream, changes.len() as u64 - 1, first, last)
}

fn provenance_pb(p: Option<&pb::Provenance>) -> Prov {
    let p = p.cloned().unwrap_or_default();
    (p.stream, p.revision, p.first_position, p.last_position)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MemberRow {
    code: String,
    name: String,
    kind: i32,
    role: i32,
    withdrawn: bool,
    role_history: Vec<i32>,
    provenance: Prov,
}

impl From<pb::Member> for MemberRow {
    fn from(m: pb::Member) -> Self {
        Self {
            provenance: provenance_pb(m.provenance.as_ref()),
            code: m.code,
            name: m.name,
            kind: m.kind,
            role: m.role,
            withdrawn: m.withdrawn,
            role_history: m.role_history,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ProjectRow {
    project_id: String,
    host: String,
    partners: Vec<String>,
    pillar: i32,
    status: i32,
    status_history: Vec<i32>,
    provenance: Prov,
}

impl From<pb::Project> for ProjectRow {
    fn from(p: pb::Project) -> Self {
        Self {
            provenance: provenance_pb(p.provenance.as_ref()),
            project_id: p.project_id,
            host: p.host,
            partners: p.partners,
            pillar: p.pillar,
            status: p.status,
            status_history: p.status_history,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct RuleRow {
    rule_id: String,
    terms: Terms,
    changes: u64,
    provenance: Prov,
}

fn terms_pb(t: Option<pb::ExportRuleTerms>) -> Terms {
    let t = t.unwrap_or_default();
    Terms {
        item: t.item,
        origin: t.origin,
        destination: t.destination,
        treatment: t.treatment,
        levy_bps: t.levy_bps,
        effective_from: t.effective_from,
    }
}

impl From<pb::ExportRule> for RuleRow {
    fn from(r: pb::ExportRule) -> Self {
        Self {
            provenance: provenance_pb(r.provenance.as_ref()),
            rule_id: r.rule_id,
            terms: terms_pb(r.terms),
            changes: r.changes,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct CommitmentRow {
    commitment_id: String,
    member: String,
    pillar: i32,
    due_on: String,
    project_id: String,
    status: i32,
    overdue: bool,
    provenance: Prov,
}

impl From<pb::Commitment> for CommitmentRow {
    fn from(c: pb::Commitment) -> Self {
        Self {
            provenance: provenance_pb(c.provenance.as_ref()),
            commitment_id: c.commitment_id,
            member: c.member,
            pillar: c.pillar,
            due_on: c.due_on,
            project_id: c.project_id,
            status: c.status,
            overdue: c.overdue,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct SummitRow {
    date: String,
    host: String,
    participants: Vec<String>,
    provenance: Prov,
}

impl From<pb::Summit> for SummitRow {
    fn from(s: pb::Summit) -> Self {
        Self {
            provenance: provenance_pb(s.provenance.as_ref()),
            date: s.date,
            host: s.host,
            participants: s.participants,
        }
    }
}

fn summary_pb(s: &pb::GetSummaryResponse) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let sections = [
        ("members_by_role", &s.members_by_role),
        ("projects_by_pillar", &s.projects_by_pillar),
        ("projects_by_status", &s.projects_by_status),
        ("commitments_by_status", &s.commitments_by_status),
        ("commitments_by_pillar", &s.commitments_by_pillar),
        ("export_rules_by_treatment", &s.export_rules_by_treatment),
    ];
    for (section, values) in sections {
        for c in values {
            *counts.entry(format!("{section}.{}", c.key)).or_insert(0) += c.count;
        }
    }
    counts.insert("members_withdrawn.".into(), s.members_withdrawn);
    counts.insert("commitments_overdue.".into(), s.commitments_overdue);
    counts.insert("summits.".into(), s.summits);
    counts.retain(|_, n| *n > 0);
    counts
}

// ---------------------------------------------------------------------------------------------
// Driving the server

struct Clients {
    ledger: LedgerServiceClient<Channel>,
    query: QueryServiceClient<Channel>,
    projection: ProjectionServiceClient<Channel>,
}

impl Clients {
    async fn of(server: &TestServer) -> Self {
        let channel = server.channel().await;
        Self {
            ledger: LedgerServiceClient::new(channel.clone()),
            query: QueryServiceClient::new(channel.clone()),
            projection: ProjectionServiceClient::new(channel),
        }
    }
}

/// A request with a deadline, so that views that never catch up fail the case instead of
/// hanging it (the server waits for `min_position` within the deadline).
fn req<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(10));
    request
}

fn failed(what: &str, status: tonic::Status) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {status:?}"))
}

/// Which state a check reads: at least `min` (the last acknowledged position), as of `as_of`.
#[derive(Clone, Copy, Debug)]
struct At {
    min: u64,
    as_of: Option<u64>,
}

impl At {
    fn consistency(self) -> Option<pb::Consistency> {
        Some(pb::Consistency { min_position: self.min, as_of_position: self.as_of, as_of_time: None })
    }

    /// The position every answer must reflect.
    fn position(self) -> u64 {
        self.as_of.unwrap_or(self.min)
    }
}

/// Every page of a listing: `$call` makes the request for the page token `$token`; each page
/// must reflect `$position`.
macro_rules! list_all {
    (|$token:ident| $call:expr => $items:ident, $position:expr, $what:expr) => {{
        let mut all = Vec::new();
        let mut $token = String::new();
        let mut pages = 0;
        loop {
            let page = $call.await.map_err(|s| failed($what, s))?.into_inner();
            prop_assert_eq!(page.position, $position, "{} page {}: position", $what, pages);
            all.extend(page.$items);
            pages += 1;
            prop_assert!(pages <= 50, "{}: more than 50 pages", $what);
            if page.next_page_token.is_empty() {
                break;
            }
            $token = page.next_page_token;
        }
        all
    }};
}

/// Every question the views answer, against the model.
async fn check_views(c: &mut Clients, model: &Model, at: At, label: &str) -> Result<(), TestCaseError> {
    let position = at.position();
    let q = &mut c.query;

    for include_withdrawn in [true, false] {
        let what = format!("{label}: ListMembers(include_withdrawn={include_withdrawn})");
        let members = list_all!(|token| q.list_members(req(pb::ListMembersRequest {
            page_size: PAGE,
            page_token: token.clone(),
            consistency: at.consistency(),
            include_withdrawn,
            ..Default::default()
        })) => members, position, &what);
        let mut actual: Vec<MemberRow> = members.into_iter().map(MemberRow::from).collect();
        actual.sort();
        prop_assert_eq!(actual, model.members(include_withdrawn), "{}", what);
    }

    for (i, code) in CODES.iter().enumerate() {
        let what = format!("{label}: GetMember({code})");
        let answer =
            q.get_member(req(pb::GetMemberRequest { code: (*code).into(), consistency: at.consistency() })).await;
        match (model.members.get(*code), answer) {
            (Some(m), Ok(answer)) => {
                let answer = answer.into_inner();
                prop_assert_eq!(answer.position, position, "{}: position", what);
                let member = answer.member.unwrap_or_default();
                let changes: Changes = member.changes.iter().map(|c| (c.position, leak(&c.event_type))).collect();
                prop_assert_eq!(&changes, &m.changes, "{}: changes", what);
                let revisions: Vec<u64> = member.changes.iter().map(|c| c.revision).collect();
                prop_assert_eq!(revisions, (0..m.changes.len() as u64).collect::<Vec<_>>(), "{}: revisions", what);
                let expected = model.members(true).into_iter().find(|r| r.code == *code);
                prop_assert_eq!(Some(MemberRow::from(member)), expected, "{}", what);
            }
            (None, Err(status)) if status.code() == tonic::Code::NotFound => {}
            (expected, answer) => {
                prop_assert!(false, "{what} (index {i}): model {expected:?}, server {answer:?}");
            }
        }
    }

    let what = format!("{label}: ListProjects");
    let projects = list_all!(|token| q.list_projects(req(pb::ListProjectsRequest {
        page_size: PAGE,
        page_token: token.clone(),
        consistency: at.consistency(),
        ..Default::default()
    })) => projects, position, &what);
    let mut actual: Vec<ProjectRow> = projects.into_iter().map(ProjectRow::from).collect();
    actual.sort();
    prop_assert_eq!(actual, model.projects(), "{}", what);

    for project in PROJECTS {
        let what = format!("{label}: GetProject({project})");
        let answer = q
            .get_project(req(pb::GetProjectRequest { project_id: project.into(), consistency: at.consistency() }))
            .await;
        match (model.projects.get(project), answer) {
            (Some(p), Ok(answer)) => {
                let answer = answer.into_inner();
                prop_assert_eq!(answer.position, position, "{}: position", what);
                let got = answer.project.unwrap_or_default();
                let changes: Changes = got.changes.iter().map(|c| (c.position, leak(&c.event_type))).collect();
                prop_assert_eq!(&changes, &p.changes, "{}: changes", what);
                let expected = model.projects().into_iter().find(|r| r.project_id == project);
                prop_assert_eq!(Some(ProjectRow::from(got)), expected, "{}", what);
            }
            (None, Err(status)) if status.code() == tonic::Code::NotFound => {}
            (expected, answer) => prop_assert!(false, "{what}: model {expected:?}, server {answer:?}"),
        }
    }

    for effective_on in std::iter::once(None).chain(EFFECTIVE_PROBES.map(Some)) {
        let what = format!("{label}: ListExportRules(effective_on={effective_on:?})");
        let rules = list_all!(|token| q.list_export_rules(req(pb::ListExportRulesRequest {
            page_size: PAGE,
            page_token: token.clone(),
            consistency: at.consistency(),
            effective_on: effective_on.unwrap_or_default().into(),
            ..Default::default()
        })) => rules, position, &what);
        let mut actual: Vec<RuleRow> = rules.into_iter().map(RuleRow::from).collect();
        actual.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        prop_assert_eq!(actual, model.rules(effective_on), "{}", what);
    }

    for rule in RULES {
        let what = format!("{label}: GetExportRule({rule})");
        let answer = q
            .get_export_rule(req(pb::GetExportRuleRequest {
                rule_id: rule.into(),
                consistency: at.consistency(),
                ..Default::default()
            }))
            .await;
        match (model.rules.get(rule), answer) {
            (Some(r), Ok(answer)) => {
                let answer = answer.into_inner();
                prop_assert_eq!(answer.position, position, "{}: position", what);
                let got = answer.rule.unwrap_or_default();
                let timeline: Vec<(Terms, u64, &'static str)> = got
                    .timeline
                    .iter()
                    .map(|t| {
                        let change = t.change.clone().unwrap_or_default();
                        (terms_pb(t.terms.clone()), change.position, leak(&change.event_type))
                    })
                    .collect();
                let expected_timeline: Vec<(Terms, u64, &'static str)> =
                    r.timeline.iter().cloned().zip(&r.changes).map(|(t, (p, e))| (t, *p, *e)).collect();
                prop_assert_eq!(timeline, expected_timeline, "{}: timeline", what);
                let expected = model.rules(None).into_iter().find(|row| row.rule_id == rule);
                prop_assert_eq!(Some(RuleRow::from(got)), expected, "{}", what);
            }
            (None, Err(status)) if status.code() == tonic::Code::NotFound => {}
            (expected, answer) => prop_assert!(false, "{what}: model {expected:?}, server {answer:?}"),
        }
    }

    let what = format!("{label}: ListCommitments");
    let commitments = list_all!(|token| q.list_commitments(req(pb::ListCommitmentsRequest {
        page_size: PAGE,
        page_token: token.clone(),
        consistency: at.consistency(),
        on: ON.into(),
        ..Default::default()
    })) => commitments, position, &what);
    let mut actual: Vec<CommitmentRow> = commitments.into_iter().map(CommitmentRow::from).collect();
    actual.sort_by(|a, b| a.commitment_id.cmp(&b.commitment_id));
    prop_assert_eq!(actual, model.commitments(), "{}", what);

    let what = format!("{label}: ListSummits");
    let summits = list_all!(|token| q.list_summits(req(pb::ListSummitsRequest {
        page_size: PAGE,
        page_token: token.clone(),
        consistency: at.consistency(),
    })) => summits, position, &what);
    let mut actual: Vec<SummitRow> = summits.into_iter().map(SummitRow::from).collect();
    actual.sort_by(|a, b| a.date.cmp(&b.date));
    prop_assert_eq!(actual, model.summits(), "{}", what);

    let what = format!("{label}: GetSummary");
    let summary = q
        .get_summary(req(pb::GetSummaryRequest { consistency: at.consistency(), on: ON.into() }))
        .await
        .map_err(|s| failed(&what, s))?
        .into_inner();
    prop_assert_eq!(summary.position, position, "{}: position", what);
    prop_assert_eq!(summary_pb(&summary), model.summary(), "{}", what);
    Ok(())
}

/// An event type as a `'static` name the model uses (unknown ones show as such).
fn leak(event_type: &str) -> &'static str {
    pax_ledger::domain::EVENT_TYPE_NAMES.into_iter().find(|t| *t == event_type).unwrap_or("<unknown event type>")
}

/// The model after each acknowledged position (index 0: before the first event).
type Snapshots = Vec<(u64, Model)>;

/// Appends every step's command, restarting where asked, and checks the live views after each
/// restart. Returns the server, its clients and the model per acknowledged position.
async fn drive(steps: &[Step]) -> Result<(TestServer, Clients, Snapshots), TestCaseError> {
    let mut server = TestServer::start().await;
    let mut clients = Clients::of(&server).await;
    let mut snapshots: Snapshots = vec![(0, Model::default())];
    for (i, step) in steps.iter().enumerate() {
        let (last, model) = snapshots.last().expect("position 0 is always there");
        let last = *last;
        match step {
            Step::Restart => {
                drop(clients);
                server = server.restart().await;
                clients = Clients::of(&server).await;
                check_views(
                    &mut clients,
                    model,
                    At { min: last, as_of: None },
                    &format!("after the restart at step {i}"),
                )
                .await?;
            }
            Step::Send(cmd) => {
                let allowed = model.allows(cmd);
                match clients.ledger.append(req(append(vec![proposed(cmd)]))).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        prop_assert!(allowed, "step {i}: the ledger accepted {cmd:?}, which breaks a rule");
                        prop_assert_eq!(response.events.len(), 1);
                        let position = response.events[0].position;
                        prop_assert_eq!(position, last + 1, "step {}: positions are dense", i);
                        let mut next = model.clone();
                        next.apply(cmd, position);
                        snapshots.push((position, next));
                    }
                    Err(status) => {
                        prop_assert!(!allowed, "step {i}: the ledger refused {cmd:?}: {status:?}");
                        prop_assert_eq!(status.code(), tonic::Code::FailedPrecondition, "step {}: {:?}", i, status);
                    }
                }
            }
        }
    }
    Ok((server, clients, snapshots))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The summary the server answers at `position` (the live one moved record by record, or walked
/// back from it over the streams changed since) equals the summary added up from every record
/// as of `position`, hash of the record set and view digest included; returns that digest.
async fn summary_moved_equals_added_up(server: &TestServer, position: u64) -> Result<String, TestCaseError> {
    let ledger = server.ledger.clone();
    let at = ledger
        .views_at(AsOf::Position(Position(position)), None, Duration::from_secs(10))
        .await
        .map_err(|e| TestCaseError::fail(format!("views at {position}: {e}")))?;
    let moved = ledger.views_summary(&at).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let added_up = ledger.views_summary_added_up(&at).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&moved, &added_up, "summary at {}: moved vs added up", position);
    prop_assert_eq!(moved.digest(at.position), added_up.digest(at.position));
    if let Some(walked) = ledger.views_summary_walked_back(&at).map_err(|e| TestCaseError::fail(e.to_string()))? {
        prop_assert_eq!(&walked, &added_up, "summary at {}: walked back vs added up", position);
    }
    Ok(pax_ledger::audit::hex::encode(&moved.digest(at.position)))
}

/// The views at the last acknowledged position equal the model; the projection status shows
/// no lag; a rebuild reproduces the digest and leaves every answer unchanged (also across a
/// restart after it).
fn views_at_the_head(steps: Vec<Step>) -> Result<(), TestCaseError> {
    runtime().block_on(async {
        let (server, mut c, snapshots) = drive(&steps).await?;
        let (last, model) = snapshots.last().expect("position 0");
        let head = At { min: *last, as_of: None };
        check_views(&mut c, model, head, "at the end").await?;

        let status = c
            .projection
            .get_projection_status(req(pb::GetProjectionStatusRequest {}))
            .await
            .map_err(|s| failed("GetProjectionStatus", s))?
            .into_inner();
        prop_assert_eq!(
            (status.position, status.log_position, status.lag),
            (*last, *last, 0),
            "GetProjectionStatus: (position, log_position, lag)"
        );
        prop_assert_eq!(status.records, model.entities(), "GetProjectionStatus: records");
        prop_assert!(!status.rebuilding);
        let added_up = summary_moved_equals_added_up(&server, *last).await?;
        prop_assert_eq!(&status.view_digest, &added_up, "GetProjectionStatus: view_digest vs added up");

        let mut stream = c
            .projection
            .rebuild_projections(req(pb::RebuildProjectionsRequest {}))
            .await
            .map_err(|s| failed("RebuildProjections", s))?
            .into_inner();
        let mut result = None;
        while let Some(message) = stream.message().await.map_err(|s| failed("RebuildProjections stream", s))? {
            match message.update {
                Some(pb::rebuild_projections_response::Update::Result(r)) => {
                    prop_assert!(result.is_none(), "RebuildProjections: a second result");
                    result = Some(r);
                }
                Some(pb::rebuild_projections_response::Update::Progress(_)) => {
                    prop_assert!(result.is_none(), "RebuildProjections: progress after the result");
                }
                None => prop_assert!(false, "RebuildProjections: an empty message"),
            }
        }
        let result = result.ok_or_else(|| TestCaseError::fail("RebuildProjections ended without a result"))?;
        prop_assert_eq!(result.position, *last, "RebuildResult: position");
        prop_assert_eq!(&result.view_digest, &status.view_digest, "RebuildResult: view_digest");
        prop_assert_eq!(result.records, status.records, "RebuildResult: records");
        prop_assert_eq!(result.events, *last, "RebuildResult: events");

        let rebuilt = c
            .projection
            .get_projection_status(req(pb::GetProjectionStatusRequest {}))
            .await
            .map_err(|s| failed("GetProjectionStatus after the rebuild", s))?
            .into_inner();
        prop_assert_eq!(
            (rebuilt.position, rebuilt.lag, &rebuilt.view_digest, rebuilt.generation),
            (*last, 0, &status.view_digest, result.generation),
            "GetProjectionStatus after the rebuild: (position, lag, view_digest, generation)"
        );
        check_views(&mut c, model, head, "after the rebuild").await?;

        drop(c);
        let server = server.restart().await;
        let mut c = Clients::of(&server).await;
        check_views(&mut c, model, head, "after the rebuild and a restart").await?;
        let restarted = c
            .projection
            .get_projection_status(req(pb::GetProjectionStatusRequest {}))
            .await
            .map_err(|s| failed("GetProjectionStatus after the rebuild and a restart", s))?
            .into_inner();
        prop_assert_eq!(
            (restarted.position, restarted.lag, &restarted.view_digest),
            (*last, 0, &status.view_digest),
            "GetProjectionStatus after the rebuild and a restart: (position, lag, view_digest)"
        );
        drop(c);
        server.stop().await;
        Ok(())
    })
}

/// Asked as of an earlier acknowledged position, every answer equals the model as it stood
/// then (and reflects that position); as of the head, the model now; past the head, OUT_OF_RANGE.
fn views_as_of(steps: Vec<Step>, picks: Vec<Index>) -> Result<(), TestCaseError> {
    runtime().block_on(async {
        let (server, mut c, snapshots) = drive(&steps).await?;
        let last = snapshots.last().expect("position 0").0;
        let chosen: BTreeSet<usize> = picks.iter().map(|p| p.index(snapshots.len())).collect();
        for i in chosen.into_iter().chain([snapshots.len() - 1]) {
            let (position, model) = &snapshots[i];
            let at = At { min: last, as_of: Some(*position) };
            check_views(&mut c, model, at, &format!("as of position {position} (head {last})")).await?;
            summary_moved_equals_added_up(&server, *position).await?;
        }
        let past = c
            .query
            .list_members(req(pb::ListMembersRequest {
                consistency: At { min: last, as_of: Some(last + 1) }.consistency(),
                ..Default::default()
            }))
            .await;
        prop_assert!(
            matches!(&past, Err(s) if s.code() == tonic::Code::OutOfRange),
            "ListMembers as of {} past the head {}: {:?}",
            last + 1,
            last,
            past
        );
        drop(c);
        server.stop().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_views_agree_with_the_model_across_restarts_and_a_rebuild(steps in prop::collection::vec(step(), 1..50)) {
        views_at_the_head(steps)?;
    }

    #[test]
    fn the_views_as_of_an_earlier_position_agree_with_the_model_then(
        steps in prop::collection::vec(step(), 1..50),
        picks in prop::collection::vec(any::<Index>(), 1..4),
    ) {
        views_as_of(steps, picks)?;
    }
}
