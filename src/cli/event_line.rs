//! Event lines (being written).
