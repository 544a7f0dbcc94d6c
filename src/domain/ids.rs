//! Identifier newtypes. Each is parsed once at the edge; an invalid value cannot be constructed.

use std::fmt;

use uuid::Uuid;

use super::{FieldError, quote};

/// Longest accepted member or jurisdiction code: ISO 3166-1 alpha-2 codes have 2 letters,
/// organisation codes such as `OECD` a few more; 8 leaves room without admitting prose.
pub const CODE_LEN_MAX: usize = 8;
/// Longest accepted export-rule slug; long enough for `origin-destination-vendor-item-variant`.
pub const RULE_ID_LEN_MAX: usize = 64;

fn check_code(field: &str, raw: &str) -> Result<(), FieldError> {
    let ok = (2..=CODE_LEN_MAX).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "must be 2 to {CODE_LEN_MAX} upper-case ASCII letters (ISO 3166-1 alpha-2 or an organisation code such as EU), got {}",
                quote(raw)
            ),
        ))
    }
}

macro_rules! code_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses a code; `field` names the request field in the error.
            pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
                Self::check(field, raw)?;
                Ok(Self(raw.to_owned()))
            }

            /// Whether `raw` is a valid code, without building one: what [`Self::parse`] checks.
            pub fn check(field: &str, raw: &str) -> Result<(), FieldError> {
                check_code(field, raw)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

code_newtype!(
    /// A participant's code: ISO 3166-1 alpha-2 for a state, or an organisation's code (`EU`, `OECD`).
    MemberCode
);
code_newtype!(
    /// A jurisdiction in an export rule (origin or destination), such as `US` or `CN`.
    Jurisdiction
);

macro_rules! uuid_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// Parses the canonical form only: hyphenated, lower case
            /// (`0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a`), the one spelling the ledger answers
            /// with. Other spellings the `uuid` crate reads (32 digits without hyphens, braces,
            /// `urn:uuid:`, upper case) are refused, and so is the nil UUID.
            pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
                match Uuid::try_parse(raw) {
                    Ok(id) if id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == raw => {
                        Self::checked(field, id)
                    }
                    _ => Err(FieldError::new(
                        field,
                        format!(
                            "must be a UUID in canonical form (lower-case hex digits hyphenated 8-4-4-4-12), got {}",
                    quote(raw)
                        ),
                    )),
                }
            }

            /// The identifier `id`, unless it is the nil UUID (as [`Self::parse`] refuses it).
            pub fn checked(field: &str, id: Uuid) -> Result<Self, FieldError> {
                if id.is_nil() {
                    return Err(FieldError::new(field, "must not be the nil UUID"));
                }
                Ok(Self(id))
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_newtype!(
    /// The client-chosen identity of an event; unique forever, the idempotency key of appends.
    EventId
);
uuid_newtype!(
    /// A project's identity (its stream is `project-{id}`).
    ProjectId
);
uuid_newtype!(
    /// A commitment's identity (its stream is `commitment-{id}`).
    CommitmentId
);

impl EventId {
    /// A fresh, time-ordered id for clients that do not choose one (such appends are not idempotent).
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

/// Whether `raw` is a slug of at most `max` characters: lower-case ASCII letters and digits in
/// groups joined by single hyphens. `what` names the kind of slug in the error.
pub(super) fn check_slug(field: &str, what: &str, raw: &str, max: usize) -> Result<(), FieldError> {
    let groups_ok =
        raw.split('-').all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if groups_ok && raw.len() <= max {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "must be {what} of at most {max} characters (a-z, 0-9, single hyphens between groups), got {}",
                quote(raw)
            ),
        ))
    }
}

/// An export rule's slug, such as `us-cn-nvidia-h200`: lower-case ASCII letters and digits in
/// groups joined by single hyphens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(String);

impl RuleId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Self::check(field, raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// Whether `raw` is a valid slug, without building one: what [`Self::parse`] checks.
    pub fn check(field: &str, raw: &str) -> Result<(), FieldError> {
        check_slug(field, "a slug", raw, RULE_ID_LEN_MAX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a stream, always derived from an event's data (`member-JP`, `project-{uuid}`,
/// `export-rule-{slug}`, `commitment-{uuid}`, `summit-{YYYY-MM-DD}`, `principal-{name}`), never
/// chosen freely.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

/// Longest stream name: the longest category prefix (`export-rule-`) plus the longest rule slug.
pub const STREAM_NAME_LEN_MAX: usize = "export-rule-".len() + RULE_ID_LEN_MAX;

/// What a stream is named after: its category and the identifier within it. Its `Display` is
/// the stream's name, the one spelling of it that [`StreamName`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKey<'a> {
    /// A member code.
    Member(&'a str),
    Project(ProjectId),
    /// A rule slug.
    ExportRule(&'a str),
    Commitment(CommitmentId),
    Summit(chrono::NaiveDate),
    /// A principal's name.
    Principal(&'a str),
}

impl fmt::Display for StreamKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Member(code) => write!(f, "member-{code}"),
            Self::Project(id) => write!(f, "project-{id}"),
            Self::ExportRule(slug) => write!(f, "export-rule-{slug}"),
            Self::Commitment(id) => write!(f, "commitment-{id}"),
            Self::Summit(date) => write!(f, "summit-{}", date.format("%Y-%m-%d")),
            Self::Principal(name) => write!(f, "principal-{name}"),
        }
    }
}

impl StreamKey<'_> {
    /// Whether `name` is this key's stream name, compared piece by piece as it is written
    /// (no name is built; only a summit's date is, by chrono, formatted into a string first).
    pub fn names(&self, name: &str) -> bool {
        /// Consumes `rest` as long as what is written is its beginning.
        struct Prefix<'n> {
            rest: &'n str,
        }
        impl fmt::Write for Prefix<'_> {
            fn write_str(&mut self, piece: &str) -> fmt::Result {
                self.rest = self.rest.strip_prefix(piece).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        let mut prefix = Prefix { rest: name };
        fmt::write(&mut prefix, format_args!("{self}")).is_ok() && prefix.rest.is_empty()
    }
}

impl StreamName {
    /// The stream named by `key`.
    pub fn of(key: StreamKey<'_>) -> Self {
        Self(key.to_string())
    }
    pub fn member(code: &MemberCode) -> Self {
        Self::of(StreamKey::Member(code.as_str()))
    }
    pub fn project(id: &ProjectId) -> Self {
        Self::of(StreamKey::Project(*id))
    }
    pub fn export_rule(id: &RuleId) -> Self {
        Self::of(StreamKey::ExportRule(id.as_str()))
    }
    pub fn commitment(id: &CommitmentId) -> Self {
        Self::of(StreamKey::Commitment(*id))
    }
    pub fn summit(date: &chrono::NaiveDate) -> Self {
        Self::of(StreamKey::Summit(*date))
    }

    pub fn principal(name: &super::PrincipalName) -> Self {
        Self::of(StreamKey::Principal(name.as_str()))
    }

    /// Parses a stream name given by a reader (e.g. `ReadStream`); only the six categories exist.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let bad = || {
            FieldError::new(
                field,
                format!(
                    "must be a stream name such as member-JP, project-{{uuid}}, export-rule-{{slug}}, commitment-{{uuid}}, summit-YYYY-MM-DD or principal-{{name}}, got {}",
                    quote(raw)
                ),
            )
        };
        let parsed = if let Some(code) = raw.strip_prefix("member-") {
            Self::member(&MemberCode::parse(field, code).map_err(|_| bad())?)
        } else if let Some(id) = raw.strip_prefix("project-") {
            Self::project(&ProjectId::parse(field, id).map_err(|_| bad())?)
        } else if let Some(slug) = raw.strip_prefix("export-rule-") {
            Self::export_rule(&RuleId::parse(field, slug).map_err(|_| bad())?)
        } else if let Some(id) = raw.strip_prefix("commitment-") {
            Self::commitment(&CommitmentId::parse(field, id).map_err(|_| bad())?)
        } else if let Some(date) = raw.strip_prefix("summit-") {
            Self::summit(&chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad())?)
        } else if let Some(name) = raw.strip_prefix("principal-") {
            Self::principal(&super::PrincipalName::parse(field, name).map_err(|_| bad())?)
        } else {
            return Err(bad());
        };
        // Canonical form only: the date parser above also accepts other spellings (without
        // leading zeros, with a sign), which would name no stream that the constructors
        // produce.
        if parsed.0 != raw {
            return Err(bad());
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A committed event's place in the one global log: dense, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

/// A committed event's place in its stream: dense, from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_parse_in_canonical_form_only() {
        for canonical in [
            "member-JP",
            "project-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            "export-rule-us-cn-nvidia-h200",
            "commitment-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            "summit-2025-12-11",
        ] {
            assert_eq!(StreamName::parse("stream", canonical).map(|s| s.0), Ok(canonical.to_owned()));
        }
        for other in [
            "member-jp",
            "project-0193A5B0-7C1E-7CC3-9C55-3F1E2D4C5B6A",
            "project-0193a5b07c1e7cc39c553f1e2d4c5b6a",
            "project-{0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a}",
            "commitment-urn:uuid:0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            "summit-2025-1-5",
            "summit-+2025-01-05",
            "unknown-JP",
        ] {
            assert!(StreamName::parse("stream", other).is_err(), "{other}");
        }
    }

    #[test]
    fn a_stream_key_names_exactly_its_stream() {
        let id = Uuid::parse_str("0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a").unwrap();
        let date = chrono::NaiveDate::from_ymd_opt(2025, 12, 11).unwrap();
        for (key, name) in [
            (StreamKey::Member("JP"), "member-JP"),
            (StreamKey::Project(ProjectId::from_uuid(id)), "project-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a"),
            (StreamKey::ExportRule("us-cn-h200"), "export-rule-us-cn-h200"),
            (StreamKey::Commitment(CommitmentId::from_uuid(id)), "commitment-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a"),
            (StreamKey::Summit(date), "summit-2025-12-11"),
        ] {
            assert_eq!(StreamName::of(key).as_str(), name);
            assert!(key.names(name), "{name}");
            for other in [&name[..name.len() - 1], &format!("{name}x"), "", &name.to_uppercase()] {
                assert!(!key.names(other), "{key:?} names {other:?}");
            }
        }
    }

    #[test]
    fn checks_agree_with_parsing() {
        for raw in ["JP", "OECD", "jp", "J", "ABCDEFGHI", "J1"] {
            assert_eq!(MemberCode::check("code", raw).is_ok(), MemberCode::parse("code", raw).is_ok(), "{raw}");
        }
        for raw in ["us-cn", "us--cn", "-us", "US", "a1-b2"] {
            assert_eq!(RuleId::check("rule", raw).is_ok(), RuleId::parse("rule", raw).is_ok(), "{raw}");
        }
        assert!(EventId::checked("id", Uuid::nil()).is_err());
        assert!(EventId::parse("id", "00000000-0000-0000-0000-000000000000").is_err());
    }

    #[test]
    fn uuids_parse_in_canonical_form_only() {
        let canonical = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a";
        assert_eq!(EventId::parse("event_id", canonical).unwrap().to_string(), canonical);
        assert_eq!(ProjectId::parse("project_id", canonical).unwrap().to_string(), canonical);
        assert_eq!(CommitmentId::parse("commitment_id", canonical).unwrap().to_string(), canonical);
        for other in [
            "0193A5B0-7C1E-7CC3-9C55-3F1E2D4C5B6A",
            "0193a5b0-7c1e-7cc3-9c55-3F1E2D4C5B6A",
            "0193a5b07c1e7cc39c553f1e2d4c5b6a",
            "{0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a}",
            "urn:uuid:0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            " 0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            "",
        ] {
            assert_eq!(EventId::parse("event_id", other).unwrap_err().field, "event_id", "{other}");
            assert!(ProjectId::parse("project_id", other).is_err(), "{other}");
            assert!(CommitmentId::parse("commitment_id", other).is_err(), "{other}");
        }
        assert_eq!(EventId::checked("id", Uuid::from_u128(7)).unwrap().as_uuid(), &Uuid::from_u128(7));
    }
}
