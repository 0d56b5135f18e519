//! Per-column Parquet settings for the files written at ingest.
//!
//! Ingest writes for speed; compaction rewrites for reading. A dictionary pays for a
//! column whose values repeat (a status code, a country, a cache status) and costs for one
//! whose values rarely do (a ray id, a client IP, a URL, a byte count): each value is
//! hashed and stored twice before the writer gives up on the dictionary page. Which
//! columns are which is measured, not configured: on the first batch of at least
//! [`MEASURE_ROWS`] rows a [`PartitionWriter`](super::PartitionWriter) sees, each top-level
//! column's distinct values are counted on a sample, and the choice holds for every file
//! the writer opens afterwards.
//!
//! A column counts as having many distinct values when more than a quarter of its
//! sampled values are distinct *and* the number of distinct values it is estimated to
//! have over a file (Chao1: from how many sampled values were seen once and twice) is above
//! [`DICTIONARY_MAX_DISTINCT`]. The second test keeps the dictionary for a column such as
//! a longitude or an edge server address: a few thousand values, mostly distinct in a
//! sample of 4,096 rows, but repeated many times over the tens of thousands of rows of a
//! file (measured on generated `http_requests`: 3.0 bytes per row without a dictionary,
//! 1.5 with one, for 1,400 to 3,600 distinct values).
//!
//! | column | few distinct values | many distinct values |
//! |---|---|---|
//! | timestamp, date | delta, no dictionary | delta, no dictionary |
//! | integer | dictionary | `DELTA_BINARY_PACKED`, no dictionary |
//! | string, binary, float | dictionary | plain, no dictionary |
//! | other (bool, list, struct, map) | the writer's default | the writer's default |
//!
//! The choice changes how values are encoded, never which rows or values a file holds.

use std::collections::HashMap;
use std::hash::Hash;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{ArrowPrimitiveType, DataType};
use parquet::basic::Encoding;
use parquet::file::properties::WriterPropertiesBuilder;
use parquet::schema::types::ColumnPath;

/// Rows a batch needs before its columns are measured: fewer say little about a column.
pub const MEASURE_ROWS: usize = 1024;
/// Rows sampled per column (evenly spread over the batch).
const SAMPLE_ROWS: usize = 4096;
/// A column whose sample has more distinct values than this share of its non-null values
/// gets no dictionary.
const HIGH_CARDINALITY: f64 = 0.25;
/// Fewer non-null values than this in the sample: keep the writer's default.
const MIN_VALUES: usize = 64;
/// A column estimated to hold at most this many distinct values keeps its dictionary
/// even when most of its sampled values are distinct: a file holds tens of thousands of
/// rows, so each value repeats, and the dictionary page stays well under the writer's
/// 1 MiB limit for values of up to ~60 bytes.
const DICTIONARY_MAX_DISTINCT: f64 = 16_384.0;

/// What one column gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Dictionary encoding (the writer's default).
    Dictionary,
    /// No dictionary, `DELTA_BINARY_PACKED`.
    Delta,
    /// No dictionary, plain values.
    Plain,
}

/// The choice for each top-level column of `batch` that gets one.
pub fn measure(batch: &RecordBatch) -> Vec<(String, Choice)> {
    let schema = batch.schema();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter_map(|(field, column)| Some((field.name().clone(), choose(column)?)))
        .collect()
}

/// Applies `choices` to a writer's properties.
pub fn apply(
    mut builder: WriterPropertiesBuilder,
    choices: &[(String, Choice)],
) -> WriterPropertiesBuilder {
    for (name, choice) in choices {
        let path = ColumnPath::from(name.as_str());
        builder = match choice {
            Choice::Dictionary => builder,
            Choice::Delta => builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED),
            Choice::Plain => builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::PLAIN),
        };
    }
    builder
}

fn choose(column: &ArrayRef) -> Option<Choice> {
    let data_type = column.data_type();
    if matches!(
        data_type,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    ) {
        return Some(Choice::Delta);
    }
    let high = many_distinct(column)?;
    Some(match (high, data_type.is_integer()) {
        (false, _) => Choice::Dictionary,
        (true, true) => Choice::Delta,
        (true, false) => Choice::Plain,
    })
}

/// Whether the sampled values of `column` are mostly distinct; `None` for a type that gets
/// no choice, or too few values to say.
fn many_distinct(column: &ArrayRef) -> Option<bool> {
    use arrow::datatypes::*;
    match column.data_type() {
        DataType::Int8 => primitive::<Int8Type>(column),
        DataType::Int16 => primitive::<Int16Type>(column),
        DataType::Int32 => primitive::<Int32Type>(column),
        DataType::Int64 => primitive::<Int64Type>(column),
        DataType::UInt8 => primitive::<UInt8Type>(column),
        DataType::UInt16 => primitive::<UInt16Type>(column),
        DataType::UInt32 => primitive::<UInt32Type>(column),
        DataType::UInt64 => primitive::<UInt64Type>(column),
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            high(valid(a).map(|i| a.value(i).to_bits()))
        }
        DataType::Float64 => {
            let a = column.as_primitive::<Float64Type>();
            high(valid(a).map(|i| a.value(i).to_bits()))
        }
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            high(valid(a).map(|i| a.value(i)))
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            high(valid(a).map(|i| a.value(i)))
        }
        DataType::Utf8View => {
            let a = column.as_string_view();
            high(valid(a).map(|i| a.value(i)))
        }
        DataType::Binary => {
            let a = column.as_binary::<i32>();
            high(valid(a).map(|i| a.value(i)))
        }
        DataType::LargeBinary => {
            let a = column.as_binary::<i64>();
            high(valid(a).map(|i| a.value(i)))
        }
        _ => None,
    }
}

/// The sampled non-null rows of `a`: every row of a small batch, or about
/// [`SAMPLE_ROWS`] evenly spread rows of a big one.
fn valid(a: &dyn Array) -> impl Iterator<Item = usize> + '_ {
    let step = a.len().div_ceil(SAMPLE_ROWS).max(1);
    (0..a.len()).step_by(step).filter(|&i| a.is_valid(i))
}

/// Whether more than [`HIGH_CARDINALITY`] of `values` are distinct and the column is
/// estimated to hold more than [`DICTIONARY_MAX_DISTINCT`] distinct values; `None` below
/// [`MIN_VALUES`] values.
fn high<T: Hash + Eq>(values: impl Iterator<Item = T>) -> Option<bool> {
    let mut seen: HashMap<T, u32> = HashMap::new();
    let mut n = 0usize;
    for v in values {
        n += 1;
        *seen.entry(v).or_default() += 1;
    }
    if n < MIN_VALUES {
        return None;
    }
    let distinct = seen.len() as f64;
    if distinct <= HIGH_CARDINALITY * n as f64 {
        return Some(false);
    }
    let once = seen.values().filter(|&&c| c == 1).count() as f64;
    let twice = seen.values().filter(|&&c| c == 2).count() as f64;
    Some(chao1(distinct, once, twice) > DICTIONARY_MAX_DISTINCT)
}

/// Chao1's (bias-corrected) estimate of how many distinct values a column holds, from the
/// distinct values of a sample and how many of them were seen once and twice.
fn chao1(distinct: f64, once: f64, twice: f64) -> f64 {
    distinct + once * (once - 1.0).max(0.0) / (2.0 * (twice + 1.0))
}

fn primitive<T: ArrowPrimitiveType>(column: &ArrayRef) -> Option<bool>
where
    T::Native: Hash + Eq,
{
    let a = column.as_primitive::<T>();
    high(valid(a).map(|i| a.value(i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn repeated_values_keep_the_dictionary_and_unique_ones_lose_it() {
        let n = 5000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("status", DataType::Int64, true),
            Field::new("bytes", DataType::Int64, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("ray", DataType::Utf8, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("sparse", DataType::Utf8, true),
            Field::new("flag", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| 200 + i % 7))),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 31 + 5))),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["US", "DE", "FR"][i as usize % 3]),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{i:016x}")),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(0..n).with_timezone("UTC")),
                // Ten values in the whole batch: too few to say.
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 500 == 0).then(|| format!("v{i}"))),
                )),
                Arc::new(arrow::array::BooleanArray::from_iter(
                    (0..n).map(|i| Some(i % 2 == 0)),
                )),
            ],
        )
        .unwrap();
        let choices = measure(&batch);
        assert_eq!(
            choices,
            vec![
                ("status".to_owned(), Choice::Dictionary),
                ("bytes".to_owned(), Choice::Delta),
                ("country".to_owned(), Choice::Dictionary),
                ("ray".to_owned(), Choice::Plain),
                ("time".to_owned(), Choice::Delta),
            ]
        );
    }

    /// A few thousand values drawn at random are mostly distinct in a sample of 4,096, yet
    /// repeat over a file: they keep the dictionary. Draws from 100,000 values do not.
    #[test]
    fn a_few_thousand_values_keep_the_dictionary() {
        let n = 8192u64;
        // A fixed mix of the row number: uniform draws, the same in every run.
        let draw = |i: u64, k: u64| {
            let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (x ^ (x >> 31)) % k
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("longitude", DataType::Float64, true),
            Field::new("ttfb_ms", DataType::Int64, true),
            Field::new("edge_ip", DataType::Utf8, true),
            Field::new("client_ip", DataType::Utf8, true),
            Field::new("body_bytes", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::Float64Array::from_iter_values(
                    (0..n).map(|i| draw(i, 3600) as f64 * 0.1 - 180.0),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|i| draw(i + n, 2000) as i64),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("10.0.{}.1", draw(i + 2 * n, 2400))),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("ip-{}", draw(i + 3 * n, 100_000))),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|i| draw(i + 4 * n, 100_000) as i64),
                )),
            ],
        )
        .unwrap();
        assert_eq!(
            measure(&batch),
            vec![
                ("longitude".to_owned(), Choice::Dictionary),
                ("ttfb_ms".to_owned(), Choice::Dictionary),
                ("edge_ip".to_owned(), Choice::Dictionary),
                ("client_ip".to_owned(), Choice::Plain),
                ("body_bytes".to_owned(), Choice::Delta),
            ]
        );
    }

    #[test]
    fn chao1_estimates_from_singletons_and_doubletons() {
        // Nothing seen once: the sample saw every value.
        assert_eq!(chao1(500.0, 0.0, 100.0), 500.0);
        // All singletons: far more values than the sample saw.
        assert!(chao1(4096.0, 4096.0, 0.0) > 1e6);
    }
}
