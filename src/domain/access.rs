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

/// A principal's name: lower-case ASCII letters and digits in groups joined by single hyphens,
/// at most [`PRINCIPAL_NAME_LEN_MAX`] characters. Its stream is `principal-{name}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrincipalName(String);

impl PrincipalName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let groups_ok =
            raw.split('-').all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if groups_ok && raw.len() <= PRINCIPAL_NAME_LEN_MAX {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!(
                    "must be a principal name of at most {PRINCIPAL_NAME_LEN_MAX} characters (a-z, 0-9, single hyphens between groups), got {}",
                    quote(raw)
                ),
            ))
        }
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
}

/// Every role, in declaration order.
pub const ROLES: [Role; 7] =
    [Role::Admin, Role::Secretariat, Role::Delegate, Role::Authority, Role::Reader, Role::Auditor, Role::Operator];

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
        let unscoped = |grant: Self| {
            if scope.is_empty() {
                Ok(grant)
            } else {
                Err(FieldError::new(field, format!("role {role} takes no scope, got {}", quote(scope))))
            }
        };
        let scope_field = || format!("{field}.scope");
        match role {
            Role::Admin => unscoped(Self::Admin),
            Role::Secretariat => unscoped(Self::Secretariat),
            Role::Reader => unscoped(Self::Reader),
            Role::Auditor => unscoped(Self::Auditor),
            Role::Operator => unscoped(Self::Operator),
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
}

impl CredentialKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Certificate => "certificate",
        }
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

    /// The digest in lower-case hexadecimal (for a certificate: its fingerprint).
    pub fn digest_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
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
    for b in random {
        token.push_str(&format!("{b:02x}"));
    }
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

/// Whether a principal holding `grants` may record `event` onto a stream whose committed state
/// is `state` (a fulfilment or withdrawal of a commitment is judged by the member that made
/// it). `admin` may record anything; access events need `admin`. Pure.
pub fn authorize(grants: &BTreeSet<Grant>, event: &EventData, state: &EntityState) -> Result<(), Denied> {
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
        EventData::CommitmentFulfilled { .. } | EventData::CommitmentWithdrawn { .. } => match state {
            EntityState::Commitment(commitment) if delegate(&commitment.member) => Ok(()),
            EntityState::Commitment(commitment) => deny(
                format!("of a commitment of member {} ", commitment.member),
                format!("delegate:{}", commitment.member),
            ),
            // No such commitment: any delegate learns that from the domain's own rule.
            _ if grants.iter().any(|g| g.role() == Role::Delegate) => Ok(()),
            _ => deny(String::new(), "delegate of the committing member".into()),
        },
        EventData::ExportRuleChanged { origin, .. } => {
            let stored_origin = match state {
                EntityState::ExportRule(rule) => Some(&rule.origin),
                _ => None,
            };
            match stored_origin {
                Some(stored) if !authority(stored) => {
                    deny(format!("of a rule whose origin is {stored} "), format!("authority:{stored}"))
                }
                _ if authority(origin) => Ok(()),
                _ => deny(format!("with origin {origin} "), format!("authority:{origin}")),
            }
        }
        EventData::AccessGranted { .. }
        | EventData::AccessRevoked { .. }
        | EventData::CredentialIssued { .. }
        | EventData::CredentialRevoked { .. } => {
            Err(Denied { event_type: event.type_name(), subject: String::new(), needs: "admin".into() })
        }
    }
}

/// Whether `grants` include `role` for any scope, or `admin`.
pub fn holds(grants: &BTreeSet<Grant>, role: Role) -> bool {
    grants.iter().any(|g| g.role() == role || g.role() == Role::Admin)
}
