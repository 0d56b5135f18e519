//! Deterministic synthetic records (in progress).
