//! Operators end to end (filled in below).
