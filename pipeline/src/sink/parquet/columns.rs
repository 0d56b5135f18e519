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
//! | column | few distinct values | many distinct values |
//! |---|---|---|
//! | timestamp, date | delta, no dictionary | delta, no dictionary |
//! | integer | dictionary | `DELTA_BINARY_PACKED`, no dictionary |
//! | string, binary, float | dictionary | plain, no dictionary |
//! | other (bool, list, struct, map) | the writer's default | the writer's default |
//!
//! The choice changes how values are encoded, never which rows or values a file holds.

use std::collections::HashSet;
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

/// Whether more than [`HIGH_CARDINALITY`] of `values` are distinct; `None` below
/// [`MIN_VALUES`] values.
fn high<T: Hash + Eq>(values: impl Iterator<Item = T>) -> Option<bool> {
    let mut seen = HashSet::new();
    let mut n = 0usize;
    for v in values {
        n += 1;
        seen.insert(v);
    }
    (n >= MIN_VALUES).then_some(seen.len() as f64 > HIGH_CARDINALITY * n as f64)
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
}
