//! Online backups (placeholder while being written).
