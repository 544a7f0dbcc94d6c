//! Opaque page tokens: what the next page needs (a position, a cursor), bound to the query
//! that produced it, so that a token from another query (other filters, direction or
//! consistency) is refused with INVALID_ARGUMENT.
//!
//! A token is hex of: a version byte, the first 8 bytes of BLAKE3 over the query's canonical
//! description, then the payload.

use crate::domain::{FieldError, Position};
use crate::ledger::EventFilter;

const TOKEN_VERSION: u8 = 1;
/// Longest token accepted (a view cursor is a stream name, at most ~80 bytes).
const TOKEN_HEX_MAX: usize = 512;

/// Builds the canonical description of a query from its parts.
#[derive(Default)]
pub struct Query {
    hasher: blake3::Hasher,
}

impl Query {
    pub fn new(rpc: &str) -> Self {
        let mut query = Self::default();
        query.text(rpc);
        query
    }

    pub fn text(&mut self, part: &str) -> &mut Self {
        self.hasher.update(&(part.len() as u64).to_be_bytes());
        self.hasher.update(part.as_bytes());
        self
    }

    pub fn number(&mut self, part: u64) -> &mut Self {
        self.hasher.update(&part.to_be_bytes());
        self
    }

    fn fingerprint(&self) -> [u8; 8] {
        self.hasher.finalize().as_bytes()[..8].try_into().expect("8 bytes")
    }
}

pub fn seal(query: &Query, payload: &[u8]) -> String {
    let mut bytes = vec![TOKEN_VERSION];
    bytes.extend_from_slice(&query.fingerprint());
    bytes.extend_from_slice(payload);
    hex::encode(bytes)
}

/// The payload of a token made by [`seal`] for the same query.
pub fn open(token: &str, query: &Query) -> Result<Vec<u8>, FieldError> {
    let bad = |why: &str| FieldError::new("page_token", why);
    if token.len() < 18 || token.len() > TOKEN_HEX_MAX || !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(bad("is not a page token of this service"));
    }
    let bytes = hex::decode(token).map_err(|_| bad("is not a page token of this service"))?;
    if bytes[0] != TOKEN_VERSION {
        return Err(bad("is not a page token of this service"));
    }
    if bytes[1..9] != query.fingerprint() {
        return Err(bad("belongs to another query (other filters, direction or consistency)"));
    }
    Ok(bytes[9..].to_vec())
}

fn read_all_query(forward: bool, filter: &EventFilter) -> Query {
    let mut query = Query::new("ReadAll");
    query.number(u64::from(forward));
    for list in [&filter.stream_prefixes, &filter.event_types] {
        query.number(list.len() as u64);
        for item in list {
            query.text(item);
        }
    }
    query
}

/// A `ReadAll` token: the next position.
pub fn encode(next: Position, forward: bool, filter: &EventFilter) -> String {
    seal(&read_all_query(forward, filter), &next.0.to_be_bytes())
}

pub fn decode(token: &str, forward: bool, filter: &EventFilter) -> Result<Position, FieldError> {
    let payload = open(token, &read_all_query(forward, filter))?;
    let bytes: [u8; 8] =
        payload.try_into().map_err(|_| FieldError::new("page_token", "is not a page token of this service"))?;
    Ok(Position(u64::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_is_bound_to_its_query() {
        let members = EventFilter { stream_prefixes: vec!["member-".into()], event_types: vec![] };
        let token = encode(Position(42), true, &members);
        assert_eq!(decode(&token, true, &members), Ok(Position(42)));
        assert!(decode(&token, false, &members).is_err());
        assert!(decode(&token, true, &EventFilter::default()).is_err());
        assert!(decode("zz", true, &members).is_err());
    }

    #[test]
    fn a_sealed_payload_opens_only_for_its_query() {
        let mut query = Query::new("ListMembers");
        query.text("member");
        let token = seal(&query, b"member-JP");
        assert_eq!(open(&token, &query).unwrap(), b"member-JP");
        let mut other = Query::new("ListMembers");
        other.text("guest");
        assert!(open(&token, &other).unwrap_err().description.contains("another query"));
        assert!(open(&token[..token.len() - 1], &query).is_err());
    }
}
