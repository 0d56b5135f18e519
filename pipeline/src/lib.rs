//! Weir: observability firehoses from Kafka, through sampling, redaction and enrichment,
//! into Parquet on object storage, queryable with SQL — exactly once.
//!
//! ```text
//!  Kafka partitions ──▶ source::kafka  (consumer group, cooperative-sticky; one worker per
//!                       │               partition, resumed from the ledger on assignment)
//!                       ▼
//!                    worker  ── decode (weir_schemas: NDJSON → Arrow; bad record → dead letter)
//!                       │    ── event_time (wall-clock bound: too far ahead → dead letter)
//!                       │    ── operator chain (weir_operators: sample ▶ redact ▶ enrich …)
//!                       │    ── sink::parquet (zstd, Hive date=/hour= of event time;
//!                       │       late hours under 1,024 rows: Snappy)
//!                       ▼
//!                    ledger ── ONE create-if-absent entry per commit = the commit point
//!                       │       (files, offset range, operator state, writer epoch);
//!                       │       every N entries folded into per-hour manifests + a checkpoint
//!                       ▼
//!                    Kafka group offset (after the ledger; lag metrics only)
//!
//!  query   ── DataFusion over the files the ledger names (query::CommittedView: per stream
//!             the checkpoint and the entries after it, then one manifest per hour queried)
//!  compact ── an hour's small files → large sorted ones: one replace entry in the dataset's
//!             maintenance stream (maintenance::Job, same commit protocol as a partition)
//!  vacuum  ── retention (replace entries removing whole hours, and dead-letter files by
//!             when their dead letters were written), then deletion of files no live entry
//!             names, after a grace
//!  backfill ── whole hours from an NDJSON archive or re-read from Kafka, through the current
//!             chain, one entry per source unit in the backfill's own streams; --replace
//!             stages them and publishes with one maintenance replace entry (or, with
//!             --abandon, one that gives them up: vacuum then deletes them)
//!  delta   ── the ledger's files folded into each dataset's _delta_log (txn id per stream)
//! ```
//!
//! Module map: [`config`] (weir.toml), [`store`] (object stores, retries), [`source::kafka`],
//! [`worker`], [`event_time`] (the `max_future` bound), [`sink::parquet`],
//! [`sink::dead_letter`], [`ledger`] (the commit log) and [`commit`] (the commit protocol
//! over it), [`query`], [`maintenance`] (writers of a dataset's maintenance stream),
//! [`compact`] (`weir compact`), [`vacuum`] (`weir vacuum`), [`backfill`] (`weir backfill`),
//! [`delta`] (Delta Lake publishing), [`runner`]
//! (`weir run`), [`demo`] (`weir demo`), [`memory`] (how `memory.limit` is shared), [`metrics`], [`reference`] (enrich reference data
//! and its reloads), [`telemetry`] (logs, spans and their OTLP export), [`failpoint`] and [`faulty_store`] (test-only crash points and store faults).

pub mod backfill;
pub mod commit;
pub mod compact;
pub mod config;
pub mod delta;
pub mod demo;
pub mod event_time;
pub mod failpoint;
pub mod faulty_store;
pub mod ledger;
pub mod maintenance;
pub mod memory;
pub mod metrics;
pub mod query;
pub mod reference;
pub mod runner;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod vacuum;
pub mod worker;
