//! Opaque page tokens of `ReadAll`: the next position, bound to the query that produced it, so
//! that a token from another query (other filters or direction) is refused.

use crate::domain::{FieldError, Position};
use crate::ledger::EventFilter;

const TOKEN_VERSION: u8 = 1;

fn fingerprint(forward: bool, filter: &EventFilter) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[u8::from(forward)]);
    for list in [&filter.stream_prefixes, &filter.event_types] {
        hasher.update(&(list.len() as u64).to_be_bytes());
        for item in list {
            hasher.update(&(item.len() as u64).to_be_bytes());
            hasher.update(item.as_bytes());
        }
    }
    hasher.finalize().as_bytes()[..8].try_into().expect("8 bytes")
}

pub fn encode(next: Position, forward: bool, filter: &EventFilter) -> String {
    let mut bytes = vec![TOKEN_VERSION];
    bytes.extend_from_slice(&next.0.to_be_bytes());
    bytes.extend_from_slice(&fingerprint(forward, filter));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode(token: &str, forward: bool, filter: &EventFilter) -> Result<Position, FieldError> {
    let bad = |why: &str| FieldError::new("page_token", why);
    if token.len() != 34 || !token.is_ascii() {
        return Err(bad("is not a page token of this service"));
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("is not a page token of this service"))?;
    if bytes[0] != TOKEN_VERSION {
        return Err(bad("is not a page token of this service"));
    }
    if bytes[9..] != fingerprint(forward, filter) {
        return Err(bad("belongs to another query (other filters or direction)"));
    }
    Ok(Position(u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"))))
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
}
