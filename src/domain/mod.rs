//! The domain: identifiers, typed events, per-entity state, the rules (`decide`) and their
//! application (`evolve`). Pure: no I/O, no tokio, no sled, no prost.

pub mod access;
mod event;
mod ids;
mod rules;
mod state;

pub use access::{Credential, CredentialKind, Grant, PrincipalName, Role};
pub use event::*;
pub use ids::*;
pub use rules::*;
pub use state::*;

/// Most characters of a request's value that an error message quotes: enough to recognise the
/// value, while the error for a value of megabytes still fits in the HTTP/2 headers that carry
/// it (16 KiB in all); quoting all of it, the client saw a transport error instead.
pub const QUOTE_CHARS_MAX: usize = 200;

/// `raw` as an error message quotes it: in double quotes and escaped (as `{:?}` prints it), cut
/// after [`QUOTE_CHARS_MAX`] characters with `…`. Every error that repeats a value it was given
/// quotes it with this.
pub fn quote(raw: &str) -> Quoted<'_> {
    Quoted(raw)
}

/// See [`quote`].
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(QUOTE_CHARS_MAX) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => {
                let quoted = format!("{:?}", &self.0[..cut]);
                write!(f, "{}…\"", &quoted[..quoted.len() - 1])
            }
        }
    }
}

/// A request field that is malformed on its own, whatever the ledger holds. `field` is the path
/// of the field inside the event's data, spelled as in the wire contract (`partners[2]`,
/// `levy_bps`), so that the service can prefix it with the event's place in the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldError {
    pub field: String,
    pub description: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }

    /// The same error with `prefix.` in front of its field path.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() { prefix.to_owned() } else { format!("{prefix}.{}", self.field) };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_is_cut_after_its_maximum() {
        assert_eq!(quote("JP").to_string(), "\"JP\"");
        assert_eq!(quote("a\"b\n").to_string(), "\"a\\\"b\\n\"");
        let at_max = "é".repeat(QUOTE_CHARS_MAX);
        assert_eq!(quote(&at_max).to_string(), format!("\"{at_max}\""));
        let over = format!("{at_max}x{}", "y".repeat(10_000));
        assert_eq!(quote(&over).to_string(), format!("\"{at_max}…\""));
    }
}
