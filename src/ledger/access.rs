//! Who the ledger lets in: the access table (every principal, its grants and credentials, as
//! the access events of the durable log say) and who is calling an append ([`Caller`]).
//!
//! The table is folded on open from the store's access index and kept by the writer: after each
//! durable group, before any of the group's requests is answered, so that a revocation applies
//! to the next request. The service reads it to authenticate every call.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::{
    self, Credential, EntityState, EventData, Grant, Position, PrincipalName, PrincipalState, RecordedEvent,
};
use crate::store::{Store, StoreError};

/// Who asks for an append, as the service authenticated it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Nobody in particular: allowed only while no principal exists (the ledger is then open to
    /// whoever reaches it, which `serve` keeps to loopback unless told otherwise).
    Anonymous,
    /// An authenticated principal: its grants decide what it may record, and it is the actor of
    /// what it records.
    Principal(PrincipalName),
    /// The operator at a stopped server's data directory, creating the first admin (or a new
    /// one when no admin can authenticate any more): `pax-ledger principal bootstrap`.
    Bootstrap,
}

/// A principal as the table holds it: its state and where its stream began and last changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalEntry {
    pub state: PrincipalState,
    pub created: Position,
    pub updated: Position,
}

/// Every principal and the credential that authenticates each.
#[derive(Clone, Debug, Default)]
pub struct AccessTable {
    principals: BTreeMap<PrincipalName, PrincipalEntry>,
    by_credential: HashMap<Credential, PrincipalName>,
    /// Whether the log holds any access event: from then on every call is authenticated.
    closed: bool,
}

impl AccessTable {
    /// Folds the access events of `store` (its access index), up to `head`.
    pub fn load(store: &Store, head: Position) -> Result<Self, StoreError> {
        let mut table = Self::default();
        for position in store.access_positions()? {
            if position > head {
                // Written in the batch of its record: beyond the head only if that batch was
                // never acknowledged. Nothing to fold.
                continue;
            }
            let record = store.read_record(position)?.ok_or_else(|| {
                StoreError::corrupt(format!("position {position}"), "listed by the access index but missing")
            })?;
            if !record.event.event.data.is_access() {
                return Err(StoreError::corrupt(
                    format!("position {position}"),
                    format!("listed by the access index but a {} event", record.event.event.data.type_name()),
                ));
            }
            table.apply(&record.event);
        }
        Ok(table)
    }

    /// A table that lets nobody in: closed, with no principal (for a read-only ledger whose
    /// access events cannot be read).
    pub fn locked() -> Self {
        Self { closed: true, ..Self::default() }
    }

    /// Whether every call must be authenticated: some principal was ever granted access.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Applies one durable event (others than access events are ignored).
    pub fn apply(&mut self, event: &RecordedEvent) {
        let data = &event.event.data;
        let principal = match data {
            EventData::AccessGranted { principal, .. }
            | EventData::AccessRevoked { principal, .. }
            | EventData::CredentialIssued { principal, .. }
            | EventData::CredentialRevoked { principal, .. } => principal,
            _ => return,
        };
        self.closed = true;
        let previous = self.principals.remove(principal);
        let state = previous.as_ref().map_or(EntityState::Empty, |p| EntityState::Principal(p.state.clone()));
        let EntityState::Principal(state) = domain::evolve(state, data) else {
            // A revocation or a credential of a principal never granted: `decide` keeps them
            // out of the log, so there is nothing to hold.
            return;
        };
        match data {
            EventData::CredentialIssued { credential, .. } => {
                self.by_credential.insert(*credential, principal.clone());
            }
            EventData::CredentialRevoked { credential, .. } => {
                self.by_credential.remove(credential);
            }
            _ => {}
        }
        let created = previous.map_or(event.position, |p| p.created);
        self.principals.insert(principal.clone(), PrincipalEntry { state, created, updated: event.position });
    }

    /// The principal a credential authenticates, and what it holds.
    pub fn authenticate(&self, credential: &Credential) -> Option<&PrincipalEntry> {
        if !credential.kind.authenticates() {
            return None;
        }
        self.by_credential.get(credential).and_then(|name| self.principals.get(name))
    }

    /// Which principal holds `credential`, if any.
    pub fn holder(&self, credential: &Credential) -> Option<&PrincipalName> {
        self.by_credential.get(credential)
    }

    pub fn get(&self, name: &PrincipalName) -> Option<&PrincipalEntry> {
        self.principals.get(name)
    }

    /// The grants of `name` (none for a principal that does not exist).
    pub fn grants(&self, name: &PrincipalName) -> BTreeSet<Grant> {
        self.principals.get(name).map(|p| p.state.grants.clone()).unwrap_or_default()
    }

    /// Every principal, by name.
    pub fn principals(&self) -> impl Iterator<Item = &PrincipalEntry> {
        self.principals.values()
    }

    /// Whether some admin can still authenticate (holds `admin` and a token or a certificate):
    /// while one can, `principal bootstrap` refuses to create another.
    pub fn has_usable_admin(&self) -> bool {
        self.principals.values().any(|p| p.state.grants.contains(&Grant::Admin) && p.state.can_authenticate())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{ProposedEvent, Revision, StreamName};

    fn name(raw: &str) -> PrincipalName {
        PrincipalName::parse("name", raw).unwrap()
    }

    fn recorded(position: u64, data: EventData) -> RecordedEvent {
        RecordedEvent {
            position: Position(position),
            stream: data.stream(),
            revision: Revision(0),
            recorded_at: Utc::now(),
            event: ProposedEvent::new(data),
        }
    }

    #[test]
    fn the_table_follows_grants_credentials_and_revocations() {
        let mut table = AccessTable::default();
        assert!(!table.is_closed());
        let jp = name("jp-delegation");
        let token = Credential::of_token("pxl_secret");
        let delegate = Grant::parse("grant", "delegate:JP").unwrap();
        table.apply(&recorded(
            3,
            EventData::AccessGranted { principal: jp.clone(), grants: vec![delegate.clone()], reason: String::new() },
        ));
        assert!(table.is_closed());
        assert_eq!(table.authenticate(&token), None, "no credential yet");
        table.apply(&recorded(4, EventData::CredentialIssued { principal: jp.clone(), credential: token }));
        let entry = table.authenticate(&token).expect("the token authenticates");
        assert_eq!(entry.state.name, jp);
        assert_eq!((entry.created, entry.updated), (Position(3), Position(4)));
        assert!(!table.has_usable_admin());
        table.apply(&recorded(
            5,
            EventData::CredentialRevoked { principal: jp.clone(), credential: token, reason: "leaked".into() },
        ));
        assert_eq!(table.authenticate(&token), None, "a revoked token authenticates nobody");
        assert_eq!(table.grants(&jp), BTreeSet::from([delegate]));
        assert_eq!(StreamName::principal(&jp).as_str(), "principal-jp-delegation");
    }

    #[test]
    fn an_admin_is_usable_only_with_a_credential() {
        let mut table = AccessTable::default();
        let root = name("root");
        table.apply(&recorded(
            1,
            EventData::AccessGranted { principal: root.clone(), grants: vec![Grant::Admin], reason: String::new() },
        ));
        assert!(!table.has_usable_admin());
        let token = Credential::of_token("t");
        table.apply(&recorded(2, EventData::CredentialIssued { principal: root.clone(), credential: token }));
        assert!(table.has_usable_admin());
        table.apply(&recorded(
            3,
            EventData::AccessRevoked { principal: root, grants: vec![Grant::Admin], reason: String::new() },
        ));
        assert!(!table.has_usable_admin());
    }
}
