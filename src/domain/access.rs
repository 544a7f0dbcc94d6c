//! Who may record what: principals, their grants and credentials, and the one rule that says
//! which grant allows which event ([`authorize`]).
//!
//! Access is itself recorded: granting and revoking roles and issuing and revoking credentials
//! are events of the principal's own stream (`principal-{name}`), decided and folded like every
//! other event (see [`super::decide`] and [`super::evolve`]). They carry digests, never a secret.

use std::collections::BTreeSet;
use std::fmt;

use sha2::{Digest, Sha256};

use super::event::EventData;
use super::ids::{Jurisdiction, MemberCode};
use super::state::EntityState;
use super::{FieldError, quote};

/// Longest principal name: an office or a system, as a slug (`jp-delegation`, `secretariat`).
pub const PRINCIPAL_NAME_LEN_MAX: usize = 64;
/// Most grants one access event changes: every role, scoped to a few dozen codes.
pub const GRANTS_MAX: usize = 64;
/// How a bearer token starts, so that one found in a log file or a paste is recognisable.
pub const TOKEN_PREFIX: &str = "pxl_";
/// Random bytes in a token: 256 bits, twice the 128 an unguessable secret needs.
pub const TOKEN_RANDOM_BYTES: usize = 32;
/// The actor of the access events that `pax-ledger principal bootstrap` records (the operator,
/// offline, creating an admin while none can authenticate). Not a principal name, so that no
/// principal can pass for it.
pub const BOOTSTRAP_ACTOR: &str = "(bootstrap)";

/// A principal's name: lower-case ASCII letters and digits in groups joined by single hyphens,
/// at most [`PRINCIPAL_NAME_LEN_MAX`] characters. Its stream is `principal-{name}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrincipalName(String);

impl PrincipalName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        super::ids::check_slug(field, "a principal name", raw, PRINCIPAL_NAME_LEN_MAX)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a principal may do. `Delegate` and `Authority` are always held for a scope (a
/// [`Grant`] names it); the others are not scoped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Grants and revokes access; everything else too.
    Admin,
    /// Membership events, summits and projects.
    Secretariat,
    /// For its member codes: their commitments (made, fulfilled, withdrawn) and their withdrawal.
    Delegate,
    /// For its origin codes: changes of the export rules whose origin is in scope.
    Authority,
    /// Reads, queries and subscriptions.
    Reader,
    /// A reader who may also use the audit service (proofs, checkpoints, verification).
    Auditor,
    /// The views' status and rebuilds, and checkpoints.
    Operator,
    /// Not a permission but an obligation: every event the principal records carries its own
    /// signature (see [`crate::domain::EventSignature`]); an unsigned one is refused.
    SignedOnly,
}

/// Every role, in declaration order.
pub const ROLES: [Role; 8] = [
    Role::Admin,
    Role::Secretariat,
    Role::Delegate,
    Role::Authority,
    Role::Reader,
    Role::Auditor,
    Role::Operator,
    Role::SignedOnly,
];

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Secretariat => "secretariat",
            Self::Delegate => "delegate",
            Self::Authority => "authority",
            Self::Reader => "reader",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::SignedOnly => "signed-only",
        }
    }

    /// Whether the role is held for a scope of codes.
    pub fn is_scoped(self) -> bool {
        matches!(self, Self::Delegate | Self::Authority)
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        ROLES.into_iter().find(|r| r.name() == raw).ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "must be one of {}, got {}",
                    ROLES.iter().map(|r| r.name()).collect::<Vec<_>>().join(", "),
                    quote(raw)
                ),
            )
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One role held by a principal, with its scope when the role has one. Written `admin`,
/// `delegate:JP`, `authority:US`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grant {
    Admin,
    Secretariat,
    Delegate(MemberCode),
    Authority(Jurisdiction),
    Reader,
    Auditor,
    Operator,
    SignedOnly,
}

impl Grant {
    pub fn role(&self) -> Role {
        match self {
            Self::Admin => Role::Admin,
            Self::Secretariat => Role::Secretariat,
            Self::Delegate(_) => Role::Delegate,
            Self::Authority(_) => Role::Authority,
            Self::Reader => Role::Reader,
            Self::Auditor => Role::Auditor,
            Self::Operator => Role::Operator,
            Self::SignedOnly => Role::SignedOnly,
        }
    }

    /// The code the role is held for, if it is scoped.
    pub fn scope(&self) -> Option<&str> {
        match self {
            Self::Delegate(code) => Some(code.as_str()),
            Self::Authority(code) => Some(code.as_str()),
            _ => None,
        }
    }

    /// The grant of `role` for `scope` (required for a scoped role, refused for another).
    pub fn new(field: &str, role: Role, scope: &str) -> Result<Self, FieldError> {
        let scope_field = || format!("{field}.scope");
        let unscoped = |grant: Self| {
            if scope.is_empty() {
                Ok(grant)
            } else {
                Err(FieldError::new(scope_field(), format!("role {role} takes no scope, got {}", quote(scope))))
            }
        };
        match role {
            Role::Admin => unscoped(Self::Admin),
            Role::Secretariat => unscoped(Self::Secretariat),
            Role::Reader => unscoped(Self::Reader),
            Role::Auditor => unscoped(Self::Auditor),
            Role::Operator => unscoped(Self::Operator),
            Role::SignedOnly => unscoped(Self::SignedOnly),
            Role::Delegate => Ok(Self::Delegate(MemberCode::parse(&scope_field(), scope)?)),
            Role::Authority => Ok(Self::Authority(Jurisdiction::parse(&scope_field(), scope)?)),
        }
    }

    /// Parses the written form: `role` or `role:SCOPE`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let (role, scope) = raw.split_once(':').unwrap_or((raw, ""));
        let role = Role::parse(field, role)?;
        if role.is_scoped() && scope.is_empty() {
            return Err(FieldError::new(
                field,
                format!("role {role} is held for a code: write {role}:CODE (e.g. {role}:JP), got {}", quote(raw)),
            ));
        }
        Self::new(field, role, scope)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope() {
            Some(scope) => write!(f, "{}:{scope}", self.role()),
            None => f.write_str(self.role().name()),
        }
    }
}

/// How a credential is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CredentialKind {
    /// A bearer token (`authorization: Bearer …`); the ledger keeps only its SHA-256.
    Token,
    /// A client certificate of mutual TLS; the ledger keeps the SHA-256 of its DER bytes.
    Certificate,
    /// An Ed25519 public key the principal signs its events with; the ledger keeps the SHA-256
    /// of its 32 bytes (each signed event carries the key itself). It authenticates nothing.
    SigningKey,
}

impl CredentialKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Certificate => "certificate",
            Self::SigningKey => "signing_key",
        }
    }

    /// Whether a credential of this kind lets its principal in (a signing key does not: it
    /// vouches for events, it opens no connection).
    pub fn authenticates(self) -> bool {
        !matches!(self, Self::SigningKey)
    }
}

/// A credential as the ledger knows it: its kind and the SHA-256 digest of the secret (a
/// token's text) or of the certificate (its DER bytes, the certificate's fingerprint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credential {
    pub kind: CredentialKind,
    pub digest: [u8; 32],
}

impl Credential {
    /// The credential of a bearer token, as presented.
    pub fn of_token(token: &str) -> Self {
        Self { kind: CredentialKind::Token, digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// The credential of a client certificate whose SHA-256 fingerprint is `digest`.
    pub fn of_certificate(digest: [u8; 32]) -> Self {
        Self { kind: CredentialKind::Certificate, digest }
    }

    /// The credential of an Ed25519 public key that signs events (its 32 bytes).
    pub fn of_signing_key(public_key: &[u8; 32]) -> Self {
        Self { kind: CredentialKind::SigningKey, digest: Sha256::digest(public_key).into() }
    }

    /// The digest in lower-case hexadecimal (for a certificate: its fingerprint).
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// A short, public name of the credential: the first 16 hexadecimal digits of its digest
    /// (what `principal list` shows and `token revoke` takes).
    pub fn id(&self) -> String {
        self.digest_hex()[..16].to_owned()
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.id())
    }
}

/// A fresh token from `random` bytes (which the caller takes from the operating system's
/// generator): [`TOKEN_PREFIX`] then the bytes in lower-case hexadecimal.
pub fn token_of(random: &[u8; TOKEN_RANDOM_BYTES]) -> String {
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_RANDOM_BYTES);
    token.push_str(TOKEN_PREFIX);
    token.push_str(&hex::encode(random));
    token
}

/// Why a principal may not record an event: the grant it would need.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("recording {event_type} {subject}needs {needs}")]
pub struct Denied {
    pub event_type: &'static str,
    /// What the event is about, when the grant depends on it (`of member KR `), with a trailing space.
    pub subject: String,
    pub needs: String,
}

/// What an event's stream already says about whom the event concerns: the member that made a
/// commitment (its fulfilment or withdrawal is that member's), the origin of an export rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner<'a> {
    pub member: Option<&'a MemberCode>,
    pub origin: Option<&'a Jurisdiction>,
}

impl<'a> Owner<'a> {
    /// The owner a stream's committed state names.
    pub fn of(state: &'a EntityState) -> Self {
        match state {
            EntityState::Commitment(commitment) => Self { member: Some(&commitment.member), origin: None },
            EntityState::ExportRule(rule) => Self { member: None, origin: Some(&rule.origin) },
            _ => Self::default(),
        }
    }
}

/// Whether a principal holding `grants` may record `event` onto a stream whose committed state
/// names `owner` (a fulfilment or withdrawal of a commitment is judged by the member that made
/// it; a change of an export rule by its stored origin as well as its new one). `admin` may
/// record anything; access events need `admin`. `signed-only` allows nothing: whether the
/// event must be signed is [`check_signature`]'s question. Pure.
pub fn authorize(grants: &BTreeSet<Grant>, event: &EventData, owner: Owner<'_>) -> Result<(), Denied> {
    if grants.contains(&Grant::Admin) {
        return Ok(());
    }
    let delegate = |code: &MemberCode| grants.contains(&Grant::Delegate(code.clone()));
    let authority = |code: &Jurisdiction| grants.contains(&Grant::Authority(code.clone()));
    let deny = |subject: String, needs: String| {
        Err(Denied { event_type: event.type_name(), subject, needs: format!("{needs} or admin") })
    };
    match event {
        EventData::MemberJoined { .. }
        | EventData::MemberRoleChanged { .. }
        | EventData::ProjectIdentified { .. }
        | EventData::ProjectStatusChanged { .. }
        | EventData::SummitConvened { .. } => {
            if grants.contains(&Grant::Secretariat) {
                Ok(())
            } else {
                deny(String::new(), "secretariat".into())
            }
        }
        EventData::MemberWithdrew { code, .. } => {
            if grants.contains(&Grant::Secretariat) || delegate(code) {
                Ok(())
            } else {
                deny(format!("of member {code} "), format!("secretariat or delegate:{code}"))
            }
        }
        EventData::CommitmentMade { member, .. } => {
            if delegate(member) {
                Ok(())
            } else {
                deny(format!("for member {member} "), format!("delegate:{member}"))
            }
        }
        EventData::CommitmentFulfilled { .. } | EventData::CommitmentWithdrawn { .. } => match owner.member {
            Some(member) if delegate(member) => Ok(()),
            Some(member) => deny(format!("of a commitment of member {member} "), format!("delegate:{member}")),
            // No such commitment: any delegate learns that from the domain's own rule.
            _ if grants.iter().any(|g| g.role() == Role::Delegate) => Ok(()),
            _ => deny(String::new(), "delegate of the committing member".into()),
        },
        EventData::ExportRuleChanged { origin, .. } => match owner.origin {
            Some(stored) if !authority(stored) => {
                deny(format!("of a rule whose origin is {stored} "), format!("authority:{stored}"))
            }
            _ if authority(origin) => Ok(()),
            _ => deny(format!("with origin {origin} "), format!("authority:{origin}")),
        },
        EventData::AccessGranted { .. }
        | EventData::AccessRevoked { .. }
        | EventData::CredentialIssued { .. }
        | EventData::CredentialRevoked { .. } => {
            Err(Denied { event_type: event.type_name(), subject: String::new(), needs: "admin".into() })
        }
    }
}

/// Why a principal's event is refused for its signature (the signature's bytes themselves are
/// checked against the signed message elsewhere: [`crate::domain::EventSignature::verifies`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefused {
    #[error(
        "principal {principal} holds signed-only: each of its events must carry its signature (append --sign-key FILE)"
    )]
    Required { principal: String },
    #[error("the key {key_id} is not a signing key of principal {principal} (register it: principal register-key)")]
    UnknownKey { principal: String, key_id: String },
}

/// Whether `principal` may record an event carrying `signature` (or none): a signature must be
/// made with one of its registered signing keys, and a principal holding `signed-only` must
/// sign. The one rule the writer applies and a replay checks. Pure.
pub fn check_signature(
    principal: &crate::domain::PrincipalState,
    signature: Option<&crate::domain::EventSignature>,
) -> Result<(), SignatureRefused> {
    match signature {
        Some(signature) if !principal.credentials.contains(&signature.credential()) => {
            Err(SignatureRefused::UnknownKey {
                principal: principal.name.to_string(),
                key_id: signature.credential().id(),
            })
        }
        None if principal.grants.contains(&Grant::SignedOnly) => {
            Err(SignatureRefused::Required { principal: principal.name.to_string() })
        }
        _ => Ok(()),
    }
}

/// Replays a log in order and checks that each event was recorded by someone allowed to, as
/// the access events before it say: what an auditor runs over a bundle. Before the first access
/// event the ledger was open (anyone could record anything): nothing is checked. From then on,
/// an event's actor must be a principal whose grants just before the event allow it, or, for
/// an access event, [`BOOTSTRAP_ACTOR`] while no admin could authenticate (the offline bootstrap).
#[derive(Clone, Debug, Default)]
pub struct AccessReplay {
    principals: std::collections::BTreeMap<PrincipalName, crate::domain::PrincipalState>,
    /// The member of each commitment and the origin of each export rule: all that [`Owner`]
    /// needs, kept small (a log of a million commitments keeps a million codes).
    members: std::collections::HashMap<crate::domain::CommitmentId, MemberCode>,
    origins: std::collections::HashMap<crate::domain::RuleId, Jurisdiction>,
    closed: bool,
    /// Events whose actor was checked.
    pub checked: u64,
}

impl AccessReplay {
    /// Checks the next event of the log (recorded by `actor`, carrying `signature` or none),
    /// then takes it into account (an event refused is not: a verification stops at it). The
    /// signature's bytes are not checked here, only that its key was the actor's and that an
    /// actor holding `signed-only` signed.
    pub fn next(
        &mut self,
        actor: &str,
        event: &EventData,
        signature: Option<&crate::domain::EventSignature>,
    ) -> Result<(), String> {
        if event.is_access() {
            self.closed = true;
        }
        if self.closed {
            self.check(actor, event, signature)?;
        } else if signature.is_some() {
            return Err("signed while no principal existed, so no signing key was registered".to_owned());
        }
        self.apply(event);
        Ok(())
    }

    fn check(
        &mut self,
        actor: &str,
        event: &EventData,
        signature: Option<&crate::domain::EventSignature>,
    ) -> Result<(), String> {
        self.checked += 1;
        if actor == BOOTSTRAP_ACTOR && event.is_access() && signature.is_none() {
            let usable_admin =
                self.principals.values().any(|p| p.grants.contains(&Grant::Admin) && p.can_authenticate());
            return if usable_admin {
                Err("recorded by the offline bootstrap while an admin could authenticate".to_owned())
            } else {
                Ok(())
            };
        }
        let Some(principal) = PrincipalName::parse("actor", actor).ok().and_then(|name| self.principals.get(&name))
        else {
            return Err(format!("recorded by {}, who is no principal", quote(actor)));
        };
        let owner = match event {
            EventData::CommitmentFulfilled { commitment_id, .. }
            | EventData::CommitmentWithdrawn { commitment_id, .. } => {
                Owner { member: self.members.get(commitment_id), origin: None }
            }
            EventData::ExportRuleChanged { rule_id, .. } => Owner { member: None, origin: self.origins.get(rule_id) },
            _ => Owner::default(),
        };
        authorize(&principal.grants, event, owner).map_err(|denied| {
            format!("recorded by principal {actor}, who held {} then: {denied}", held_text(&principal.grants))
        })?;
        check_signature(principal, signature).map_err(|refused| format!("recorded by principal {actor}: {refused}"))
    }

    fn apply(&mut self, event: &EventData) {
        match event {
            EventData::CommitmentMade { commitment_id, member, .. } => {
                self.members.insert(*commitment_id, member.clone());
            }
            EventData::ExportRuleChanged { rule_id, origin, .. } => {
                self.origins.entry(rule_id.clone()).or_insert_with(|| origin.clone());
            }
            EventData::AccessGranted { principal, .. }
            | EventData::AccessRevoked { principal, .. }
            | EventData::CredentialIssued { principal, .. }
            | EventData::CredentialRevoked { principal, .. } => {
                let state = self.principals.remove(principal).map_or(EntityState::Empty, EntityState::Principal);
                if let EntityState::Principal(state) = crate::domain::evolve(state, event) {
                    self.principals.insert(principal.clone(), state);
                }
            }
            _ => {}
        }
    }
}

/// `admin, delegate:JP`, or `no grant`.
pub fn held_text(grants: &BTreeSet<Grant>) -> String {
    if grants.is_empty() {
        return "no grant".to_owned();
    }
    grants.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::state::ExportRuleState;
    use crate::domain::{CommitmentId, Pillar, ProjectId, ProjectStatus, RuleId, Treatment};

    fn code(raw: &str) -> MemberCode {
        MemberCode::parse("code", raw).unwrap()
    }

    fn origin(raw: &str) -> Jurisdiction {
        Jurisdiction::parse("origin", raw).unwrap()
    }

    /// A commitment of `member` (always the same id).
    fn commitment_made(member: &str) -> EventData {
        EventData::CommitmentMade {
            commitment_id: CommitmentId::parse("id", "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a").unwrap(),
            member: code(member),
            pillar: Pillar::Energy,
            description: "d".into(),
            project_id: None,
            due_on: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
        }
    }

    /// The state of [`commitment_made`]'s stream.
    fn commitment_of(member: &str) -> EntityState {
        crate::domain::evolve(EntityState::Empty, &commitment_made(member))
    }

    fn rule_from(raw: &str) -> EntityState {
        EntityState::ExportRule(ExportRuleState {
            rule_id: RuleId::parse("r", "r").unwrap(),
            item: "i".into(),
            origin: origin(raw),
            destination: origin("CN"),
            treatment: Treatment::Allowed,
            levy_bps: None,
            effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            authority: "a".into(),
            changes: 1,
        })
    }

    /// One event of each type about JP (or with origin JP), with the state its stream has when
    /// it is recorded.
    fn one_of_each_type_about_jp() -> Vec<(EventData, EntityState)> {
        let date = NaiveDate::from_ymd_opt(2026, 2, 20).unwrap();
        let id = CommitmentId::parse("id", "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a").unwrap();
        let project = ProjectId::parse("id", "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6b").unwrap();
        let principal = PrincipalName::parse("p", "someone").unwrap();
        let events = vec![
            (
                EventData::MemberJoined {
                    code: code("JP"),
                    name: "Japan".into(),
                    kind: crate::domain::MemberKind::State,
                    role: crate::domain::MemberRole::Member,
                },
                EntityState::Empty,
            ),
            (
                EventData::MemberRoleChanged { code: code("JP"), role: crate::domain::MemberRole::Guest },
                EntityState::Empty,
            ),
            (EventData::MemberWithdrew { code: code("JP"), reason: String::new() }, EntityState::Empty),
            (
                EventData::ProjectIdentified {
                    project_id: project,
                    title: "t".into(),
                    pillar: Pillar::Energy,
                    host: code("JP"),
                    partners: vec![],
                    companies: vec![],
                    description: String::new(),
                },
                EntityState::Empty,
            ),
            (
                EventData::ProjectStatusChanged {
                    project_id: project,
                    status: ProjectStatus::Approved,
                    reason: String::new(),
                },
                EntityState::Empty,
            ),
            (
                EventData::ExportRuleChanged {
                    rule_id: RuleId::parse("r", "r").unwrap(),
                    item: "i".into(),
                    origin: origin("JP"),
                    destination: origin("CN"),
                    treatment: Treatment::Allowed,
                    levy_bps: None,
                    effective_from: date,
                    authority: "a".into(),
                },
                EntityState::Empty,
            ),
            (
                EventData::CommitmentMade {
                    commitment_id: id,
                    member: code("JP"),
                    pillar: Pillar::Energy,
                    description: "d".into(),
                    project_id: None,
                    due_on: date,
                },
                EntityState::Empty,
            ),
            (EventData::CommitmentFulfilled { commitment_id: id, evidence: "e".into() }, commitment_of("JP")),
            (EventData::CommitmentWithdrawn { commitment_id: id, reason: String::new() }, commitment_of("JP")),
            (
                EventData::SummitConvened {
                    date,
                    host: code("JP"),
                    chair: "c".into(),
                    participants: vec![],
                    location: "l".into(),
                },
                EntityState::Empty,
            ),
            (
                EventData::AccessGranted {
                    principal: principal.clone(),
                    grants: vec![Grant::Reader],
                    reason: String::new(),
                },
                EntityState::Empty,
            ),
            (
                EventData::AccessRevoked {
                    principal: principal.clone(),
                    grants: vec![Grant::Reader],
                    reason: String::new(),
                },
                EntityState::Empty,
            ),
            (
                EventData::CredentialIssued { principal: principal.clone(), credential: Credential::of_token("t") },
                EntityState::Empty,
            ),
            (
                EventData::CredentialRevoked {
                    principal,
                    credential: Credential::of_token("t"),
                    reason: String::new(),
                },
                EntityState::Empty,
            ),
        ];
        assert_eq!(
            events.iter().map(|(e, _)| e.type_name()).collect::<Vec<_>>(),
            crate::domain::EVENT_TYPE_NAMES,
            "one event of each type, in order"
        );
        events
    }

    /// The rule, written as a table: which grants allow recording each event type about JP.
    fn allowed(event_type: &str, grant: &Grant) -> bool {
        let jp_delegate = *grant == Grant::Delegate(code("JP"));
        match (event_type, grant) {
            (_, Grant::Admin) => true,
            (
                "member_joined"
                | "member_role_changed"
                | "project_identified"
                | "project_status_changed"
                | "summit_convened",
                Grant::Secretariat,
            ) => true,
            ("member_withdrew", Grant::Secretariat) => true,
            ("member_withdrew" | "commitment_made" | "commitment_fulfilled" | "commitment_withdrawn", _) => jp_delegate,
            ("export_rule_changed", Grant::Authority(o)) => o.as_str() == "JP",
            _ => false,
        }
    }

    /// Every event type × every role × in and out of scope, against the table above.
    #[test]
    fn who_may_record_what_for_every_event_type_role_and_scope() {
        let grants = [
            Grant::Admin,
            Grant::Secretariat,
            Grant::Delegate(code("JP")),
            Grant::Delegate(code("KR")),
            Grant::Authority(origin("JP")),
            Grant::Authority(origin("NL")),
            Grant::Reader,
            Grant::Auditor,
            Grant::Operator,
            Grant::SignedOnly,
        ];
        assert_eq!(
            grants.iter().map(Grant::role).collect::<BTreeSet<_>>(),
            ROLES.into_iter().collect::<BTreeSet<_>>(),
            "every role is tried"
        );
        for (event, state) in one_of_each_type_about_jp() {
            for grant in &grants {
                let held = BTreeSet::from([grant.clone()]);
                let verdict = authorize(&held, &event, Owner::of(&state));
                assert_eq!(
                    verdict.is_ok(),
                    allowed(event.type_name(), grant),
                    "{} by {grant}: {verdict:?}",
                    event.type_name()
                );
                if let Err(denied) = verdict {
                    assert!(denied.to_string().contains("admin"), "{denied}");
                }
            }
            assert!(authorize(&BTreeSet::new(), &event, Owner::of(&state)).is_err(), "no grant records nothing");
        }
    }

    #[test]
    fn a_refusal_names_the_grant_it_needs() {
        let held = BTreeSet::from([Grant::Delegate(code("JP"))]);
        let kr = commitment_made("KR");
        let denied = authorize(&held, &kr, Owner::default()).unwrap_err();
        assert_eq!(denied.to_string(), "recording commitment_made for member KR needs delegate:KR or admin");
        let fulfilled = EventData::CommitmentFulfilled {
            commitment_id: CommitmentId::parse("id", "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a").unwrap(),
            evidence: "e".into(),
        };
        let denied = authorize(&held, &fulfilled, Owner::of(&commitment_of("KR"))).unwrap_err();
        assert!(denied.to_string().contains("delegate:KR"), "{denied}");
    }

    #[test]
    fn an_authority_changes_only_rules_whose_origin_it_holds_before_and_after() {
        let us = BTreeSet::from([Grant::Authority(origin("US"))]);
        let change = |from: &str| EventData::ExportRuleChanged {
            rule_id: RuleId::parse("r", "r").unwrap(),
            item: "i".into(),
            origin: origin(from),
            destination: origin("CN"),
            treatment: Treatment::Prohibited,
            levy_bps: None,
            effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            authority: "a".into(),
        };
        assert!(authorize(&us, &change("US"), Owner::default()).is_ok());
        let denied = authorize(&us, &change("NL"), Owner::default()).unwrap_err();
        assert!(denied.to_string().contains("authority:NL"), "{denied}");
        // A rule stored with origin NL is NL's, even if the change claims another origin.
        let denied = authorize(&us, &change("US"), Owner::of(&rule_from("NL"))).unwrap_err();
        assert!(denied.to_string().contains("authority:NL"), "{denied}");
    }

    #[test]
    fn grants_are_written_and_parsed_alike() {
        for raw in
            ["admin", "secretariat", "delegate:JP", "authority:US", "reader", "auditor", "operator", "signed-only"]
        {
            assert_eq!(Grant::parse("g", raw).unwrap().to_string(), raw);
        }
        for bad in ["delegate", "delegate:jp", "reader:JP", "owner", "authority:", ""] {
            assert!(Grant::parse("g", bad).is_err(), "{bad}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", &"a".repeat(PRINCIPAL_NAME_LEN_MAX + 1)] {
            assert!(PrincipalName::parse("p", bad).is_err(), "{bad}");
        }
        assert!(PrincipalName::parse("p", "jp-delegation-2").is_ok());
    }

    #[test]
    fn a_token_is_prefixed_hex_of_its_random_bytes_and_kept_as_its_sha256() {
        let token = token_of(&[0xab; TOKEN_RANDOM_BYTES]);
        assert_eq!(token, format!("{TOKEN_PREFIX}{}", "ab".repeat(TOKEN_RANDOM_BYTES)));
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            Credential::of_token("abc").digest_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Credential::of_token("abc").id(), "ba7816bf8f01cfea");
    }

    #[test]
    fn a_replay_checks_each_event_against_the_access_before_it() {
        let admin = PrincipalName::parse("p", "admin").unwrap();
        let jp = PrincipalName::parse("p", "jp-delegation").unwrap();
        let token = Credential::of_token("t");
        let made = commitment_made;
        let grant = |who: &PrincipalName, g: Grant| EventData::AccessGranted {
            principal: who.clone(),
            grants: vec![g],
            reason: String::new(),
        };
        let mut replay = AccessReplay::default();
        // The open era: anything by anyone.
        replay.next("whoever", &made("KR"), None).unwrap();
        assert_eq!(replay.checked, 0);
        // The bootstrap, while no admin can authenticate.
        replay.next(BOOTSTRAP_ACTOR, &grant(&admin, Grant::Admin), None).unwrap();
        replay
            .next(BOOTSTRAP_ACTOR, &EventData::CredentialIssued { principal: admin.clone(), credential: token }, None)
            .unwrap();
        let again = replay.next(BOOTSTRAP_ACTOR, &grant(&jp, Grant::Admin), None).unwrap_err();
        assert!(again.contains("while an admin could authenticate"), "{again}");
        replay.next("admin", &grant(&jp, Grant::Delegate(code("JP"))), None).unwrap();
        replay.next("jp-delegation", &made("JP"), None).unwrap();
        let kr = replay.next("jp-delegation", &made("KR"), None).unwrap_err();
        assert!(kr.contains("delegate:KR") && kr.contains("held delegate:JP"), "{kr}");
        let stranger = replay.next("whoever", &made("JP"), None).unwrap_err();
        assert!(stranger.contains("no principal"), "{stranger}");
        let not_admin = replay.next("jp-delegation", &grant(&jp, Grant::Admin), None).unwrap_err();
        assert!(not_admin.contains("needs admin"), "{not_admin}");
        // An admin revoking itself: credentials first, then the grant, each while still admin.
        replay
            .next(
                "admin",
                &EventData::CredentialRevoked { principal: admin.clone(), credential: token, reason: String::new() },
                None,
            )
            .unwrap();
        replay
            .next(
                "admin",
                &EventData::AccessRevoked {
                    principal: admin.clone(),
                    grants: vec![Grant::Admin],
                    reason: String::new(),
                },
                None,
            )
            .unwrap();
        assert!(replay.next("admin", &made("JP"), None).is_err(), "no longer admin");
        // No admin can authenticate any more: the bootstrap may create one.
        replay.next(BOOTSTRAP_ACTOR, &grant(&admin, Grant::Admin), None).unwrap();
        assert_eq!(replay.checked, 12, "every event since the first access event, refused ones too");
    }

    #[test]
    fn a_signature_needs_a_key_of_the_actor_and_signed_only_needs_a_signature() {
        use crate::domain::EventSignature;
        let signature_by = |seed: u8| EventSignature {
            public_key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes(),
            // Not checked here: whether the bytes verify is the record's question.
            signature: [0; 64],
        };
        let (mine, other) = (signature_by(7), signature_by(8));
        let admin = PrincipalName::parse("p", "admin").unwrap();
        let jp = PrincipalName::parse("p", "jp-delegation").unwrap();
        let grant = |who: &PrincipalName, g: Grant| EventData::AccessGranted {
            principal: who.clone(),
            grants: vec![g],
            reason: String::new(),
        };
        let issue = |who: &PrincipalName, credential: Credential| EventData::CredentialIssued {
            principal: who.clone(),
            credential,
        };
        let mut replay = AccessReplay::default();
        let open = replay.next("whoever", &commitment_made("JP"), Some(&mine)).unwrap_err();
        assert!(open.contains("no principal existed"), "{open}");
        replay.next(BOOTSTRAP_ACTOR, &grant(&admin, Grant::Admin), None).unwrap();
        // A signing key lets nobody in: the bootstrap may still create an admin with a token.
        replay.next(BOOTSTRAP_ACTOR, &issue(&admin, mine.credential()), None).unwrap();
        replay.next(BOOTSTRAP_ACTOR, &issue(&admin, Credential::of_token("t")), None).unwrap();
        replay.next("admin", &grant(&jp, Grant::Delegate(code("JP"))), None).unwrap();
        let unregistered = replay.next("jp-delegation", &commitment_made("JP"), Some(&other)).unwrap_err();
        assert!(
            unregistered
                .contains(&format!("key {} is not a signing key of principal jp-delegation", other.credential().id())),
            "{unregistered}"
        );
        // The admin's key is the admin's, not the delegation's.
        let admins = replay.next("jp-delegation", &commitment_made("JP"), Some(&mine)).unwrap_err();
        assert!(admins.contains("not a signing key of principal jp-delegation"), "{admins}");
        replay.next("admin", &issue(&jp, other.credential()), None).unwrap();
        replay.next("jp-delegation", &commitment_made("JP"), Some(&other)).unwrap();
        replay.next("jp-delegation", &commitment_made("JP"), None).unwrap();
        replay.next("admin", &grant(&jp, Grant::SignedOnly), None).unwrap();
        let unsigned = replay.next("jp-delegation", &commitment_made("JP"), None).unwrap_err();
        assert!(unsigned.contains("holds signed-only"), "{unsigned}");
        replay.next("jp-delegation", &commitment_made("JP"), Some(&other)).unwrap();
        // signed-only allows nothing by itself.
        let held = BTreeSet::from([Grant::SignedOnly]);
        assert!(authorize(&held, &commitment_made("JP"), Owner::default()).is_err());
        // A retired key signs nothing more.
        let retired = EventData::CredentialRevoked {
            principal: jp.clone(),
            credential: other.credential(),
            reason: String::new(),
        };
        replay.next("admin", &retired, None).unwrap();
        assert!(replay.next("jp-delegation", &commitment_made("JP"), Some(&other)).is_err());
    }
}
