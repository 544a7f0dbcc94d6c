//! The domain: identifiers, typed events, per-entity state, the rules (`decide`) and their
//! application (`evolve`). Pure: no I/O, no tokio, no sled, no prost.

mod event;
mod ids;
mod rules;
mod state;

pub use event::*;
pub use ids::*;
pub use rules::*;
pub use state::*;

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
