//! Where rows go: Parquet files per Hive partition, and dead letters.

pub mod dead_letter;
pub mod parquet;
