//! The wall-clock bound on event times (`[event_time] max_future`).
//!
//! A row's event time picks its Hive hour. The decoder already refuses records whose event
//! time is missing, null or no instant (`invalid_event_time`); what it cannot judge is a
//! time far in the future (a producer with a wrong clock, seconds read as milliseconds
//! upstream), which would open a partition years ahead. That needs the clock, and operators
//! never read the clock (design invariant 4), so the check runs in the worker, between the
//! decoder and the operator chain, on the decoded batch:
//!
//! ```text
//!  decode ──▶ event time ≤ now + max_future? ──yes──▶ operator chain ──▶ Parquet
//!                         └──no──▶ dead letters (stage decode, invalid_event_time)
//! ```
//!
//! The same input can therefore land differently when replayed much later: a record that
//! was too far ahead when first read is accepted by a replay or backfill after its time
//! has come. Each record still ends in exactly one place per commit, since only committed
//! attempts count.

use std::time::Duration;

use arrow::array::{Array, BooleanArray, RecordBatch, TimestampNanosecondArray};

/// Rows (by index) of `batch` whose event time, column `column`, is after `limit_nanos`
/// (nanoseconds since the epoch). Null event times are left to the decoder.
pub fn beyond(batch: &RecordBatch, column: usize, limit_nanos: i64) -> Vec<usize> {
    let Some(times) = batch
        .column(column)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
    else {
        return Vec::new();
    };
    times
        .iter()
        .enumerate()
        .filter_map(|(row, t)| t.filter(|&t| t > limit_nanos).map(|_| row))
        .collect()
}

/// `now + max_future` in nanoseconds since the epoch, saturating.
pub fn limit(now: chrono::DateTime<chrono::Utc>, max_future: Duration) -> i64 {
    let now = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    now.saturating_add(i64::try_from(max_future.as_nanos()).unwrap_or(i64::MAX))
}

/// `batch` without the rows in `drop` (sorted, as [`beyond`] returns them).
pub fn without(
    batch: &RecordBatch,
    drop: &[usize],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut keep = vec![true; batch.num_rows()];
    for &row in drop {
        keep[row] = false;
    }
    arrow::compute::filter_record_batch(batch, &BooleanArray::from(keep))
}

/// Nanoseconds since the epoch as RFC 3339 text, for error messages.
pub fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn rows_past_the_bound_are_found_and_removed() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T06:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let hour = 3_600_000_000_000i64;
        let now_nanos = now.timestamp_nanos_opt().unwrap();
        let limit = limit(now, Duration::from_secs(3600));
        assert_eq!(limit, now_nanos + hour);
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("v", DataType::Int64, false),
        ]));
        let times = vec![
            Some(now_nanos - 30 * 24 * hour),
            Some(now_nanos + hour),
            Some(now_nanos + hour + 1),
            None,
            Some(now_nanos + 365 * 24 * hour),
        ];
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![0, 1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let late = beyond(&batch, 0, limit);
        assert_eq!(late, [2, 4]);
        let kept = without(&batch, &late).unwrap();
        let values: Vec<i64> = kept
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(values, [0, 1, 3]);
        assert_eq!(rfc3339(now_nanos + hour), "2026-12-05T07:00:00Z");
        assert_eq!(limit_of_huge(), i64::MAX);
    }

    fn limit_of_huge() -> i64 {
        limit(chrono::Utc::now(), Duration::from_secs(u64::MAX))
    }
}
