//! Where rows go: Parquet files per Hive partition, and dead letters (to the lake, and
//! optionally to a Kafka topic).

pub mod dead_letter;
pub mod dead_letter_topic;
pub mod parquet;
