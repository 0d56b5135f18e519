//! Second broker implementation smoke test.
