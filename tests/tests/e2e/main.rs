//! End-to-end tests: `weir run` as a child process against a Kafka-protocol broker in a
//! process of its own and s3s-fs on 127.0.0.1, checked with `weir query` and with pyarrow /
//! DuckDB / Spark reading the Hive layout directly and `deltalake` reading the Delta tables. `bash .ci/run` installs the servers and readers.

mod harness;

mod backbone;
mod backfill;
mod compaction;
mod crash;
mod delta;
mod faults;
mod fencing;
mod input;
mod input_bounds;
mod late_data;
mod lost_answers;
mod metrics;
mod operators;
mod ops;
mod tansu;
mod tls;
