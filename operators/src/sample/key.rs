//! Per-row hashing of key and group columns, straight over Arrow buffers (no per-row
//! allocation).
//!
//! A composite key chains XXH64: `h = seed; for each field: h = xxh64(value, h)`. Values
//! hash as their bytes: strings and binaries as stored, integers (of any width, and
//! timestamps and dates) as their value widened to 64 bits little-endian, booleans as one
//! byte. So `Int32 7` and `Int64 7` hash alike and a schema widening keeps decisions.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrowPrimitiveType, GenericByteArray, RecordBatch};
use arrow_buffer::{ArrowNativeType, NullBuffer};
use arrow_schema::DataType;

use super::hash::{randomness_of_hash, trace_id_randomness, trace_id_randomness_binary, xxh64};

/// Marks a row without randomness (null key, or not a trace id). Real randomness has only
/// 56 bits, so it can never equal this.
pub const MISSING: u64 = u64::MAX;

/// Seed perturbation used for a null value inside a group key, so that `(null, "a")` and
/// `("", "a")` are different groups.
const NULL_SALT: u64 = 0x6e75_6c6c_5745_4952;

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, String> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| format!("field {name:?} is missing from the batch"))
}

fn hash_bytes<T: arrow_array::types::ByteArrayType>(array: &GenericByteArray<T>, out: &mut [u64]) {
    let offsets = array.value_offsets();
    let data = array.value_data();
    for (index, slot) in out.iter_mut().enumerate() {
        let start = offsets[index].as_usize();
        let end = offsets[index + 1].as_usize();
        *slot = xxh64(&data[start..end], *slot);
    }
}

fn hash_signed<T>(array: &dyn Array, out: &mut [u64])
where
    T: ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    let values = array.as_primitive::<T>().values();
    for (slot, value) in out.iter_mut().zip(values.iter()) {
        let wide: i64 = (*value).into();
        *slot = xxh64(&wide.to_le_bytes(), *slot);
    }
}

fn hash_unsigned<T>(array: &dyn Array, out: &mut [u64])
where
    T: ArrowPrimitiveType,
    T::Native: Into<u64>,
{
    let values = array.as_primitive::<T>().values();
    for (slot, value) in out.iter_mut().zip(values.iter()) {
        let wide: u64 = (*value).into();
        *slot = xxh64(&wide.to_le_bytes(), *slot);
    }
}

/// `out[i] = xxh64(value_i, out[i])` for every row; rows where the column is null are left
/// for the caller (their slot holds a hash of whatever bytes the null slot stores).
fn hash_values(array: &dyn Array, out: &mut [u64]) -> Result<(), String> {
    match array.data_type() {
        DataType::Utf8 => hash_bytes(array.as_string::<i32>(), out),
        DataType::LargeUtf8 => hash_bytes(array.as_string::<i64>(), out),
        DataType::Binary => hash_bytes(array.as_binary::<i32>(), out),
        DataType::LargeBinary => hash_bytes(array.as_binary::<i64>(), out),
        DataType::Utf8View => {
            let array = array.as_string_view();
            for (index, slot) in out.iter_mut().enumerate() {
                *slot = xxh64(array.value(index).as_bytes(), *slot);
            }
        }
        DataType::BinaryView => {
            let array = array.as_binary_view();
            for (index, slot) in out.iter_mut().enumerate() {
                *slot = xxh64(array.value(index), *slot);
            }
        }
        DataType::FixedSizeBinary(_) => {
            let array = array.as_fixed_size_binary();
            for (index, slot) in out.iter_mut().enumerate() {
                *slot = xxh64(array.value(index), *slot);
            }
        }
        DataType::Boolean => {
            let array = array.as_boolean();
            for (index, slot) in out.iter_mut().enumerate() {
                *slot = xxh64(&[u8::from(array.value(index))], *slot);
            }
        }
        DataType::Int8 => hash_signed::<Int8Type>(array, out),
        DataType::Int16 => hash_signed::<Int16Type>(array, out),
        DataType::Int32 => hash_signed::<Int32Type>(array, out),
        DataType::Int64 => hash_signed::<Int64Type>(array, out),
        DataType::Date32 => hash_signed::<Date32Type>(array, out),
        DataType::Date64 => hash_signed::<Date64Type>(array, out),
        DataType::Timestamp(unit, _) => {
            use arrow_schema::TimeUnit::*;
            match unit {
                Second => hash_signed::<TimestampSecondType>(array, out),
                Millisecond => hash_signed::<TimestampMillisecondType>(array, out),
                Microsecond => hash_signed::<TimestampMicrosecondType>(array, out),
                Nanosecond => hash_signed::<TimestampNanosecondType>(array, out),
            }
        }
        DataType::UInt8 => hash_unsigned::<UInt8Type>(array, out),
        DataType::UInt16 => hash_unsigned::<UInt16Type>(array, out),
        DataType::UInt32 => hash_unsigned::<UInt32Type>(array, out),
        DataType::UInt64 => hash_unsigned::<UInt64Type>(array, out),
        other => return Err(format!("cannot hash a {other} column")),
    }
    Ok(())
}

/// Randomness of every row from the key `fields` (hash mode): the top 56 bits of the
/// chained XXH64, or [`MISSING`] where any field is null.
pub fn hashed_randomness(
    batch: &RecordBatch,
    fields: &[String],
    seed: u64,
    out: &mut Vec<u64>,
) -> Result<(), String> {
    let rows = batch.num_rows();
    out.clear();
    out.resize(rows, seed);
    let mut nulls: Option<NullBuffer> = None;
    for name in fields {
        let array = column(batch, name)?;
        hash_values(array, out)?;
        nulls = NullBuffer::union(nulls.as_ref(), array.logical_nulls().as_ref());
    }
    for slot in out.iter_mut() {
        *slot = randomness_of_hash(*slot);
    }
    if let Some(nulls) = nulls {
        for index in (!nulls.inner()).set_indices() {
            out[index] = MISSING;
        }
    }
    Ok(())
}

/// Randomness of every row from a W3C trace id column: its lowest 56 bits, or [`MISSING`]
/// where the value is null or not a trace id.
pub fn trace_id_randomness_column(
    batch: &RecordBatch,
    field: &str,
    out: &mut Vec<u64>,
) -> Result<(), String> {
    let array = column(batch, field)?;
    let rows = batch.num_rows();
    out.clear();
    out.reserve(rows);
    let nulls = array.logical_nulls();
    let valid = |index: usize| nulls.as_ref().is_none_or(|n| n.is_valid(index));
    match array.data_type() {
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            out.extend((0..rows).map(|i| {
                if valid(i) {
                    trace_id_randomness(strings.value(i).as_bytes()).unwrap_or(MISSING)
                } else {
                    MISSING
                }
            }));
        }
        DataType::LargeUtf8 => {
            let strings = array.as_string::<i64>();
            out.extend((0..rows).map(|i| {
                if valid(i) {
                    trace_id_randomness(strings.value(i).as_bytes()).unwrap_or(MISSING)
                } else {
                    MISSING
                }
            }));
        }
        DataType::Utf8View => {
            let strings = array.as_string_view();
            out.extend((0..rows).map(|i| {
                if valid(i) {
                    trace_id_randomness(strings.value(i).as_bytes()).unwrap_or(MISSING)
                } else {
                    MISSING
                }
            }));
        }
        DataType::FixedSizeBinary(16) => {
            let binary = array.as_fixed_size_binary();
            out.extend((0..rows).map(|i| {
                if valid(i) {
                    trace_id_randomness_binary(binary.value(i)).unwrap_or(MISSING)
                } else {
                    MISSING
                }
            }));
        }
        other => return Err(format!("trace id field {field:?} is {other}")),
    }
    Ok(())
}

/// Full 64-bit group hash of every row over `fields` (seed 0). Nulls are values here: a
/// null hashes differently from every string.
pub fn group_hashes(
    batch: &RecordBatch,
    fields: &[String],
    out: &mut Vec<u64>,
) -> Result<(), String> {
    out.clear();
    out.resize(batch.num_rows(), 0);
    for name in fields {
        let array = column(batch, name)?;
        match array.logical_nulls() {
            None => hash_values(array, out)?,
            Some(nulls) => {
                let null_rows: Vec<usize> = (!nulls.inner()).set_indices().collect();
                let before: Vec<u64> = null_rows.iter().map(|&index| out[index]).collect();
                hash_values(array, out)?;
                for (index, seed) in null_rows.into_iter().zip(before) {
                    out[index] = xxh64(&[], seed ^ NULL_SALT);
                }
            }
        }
    }
    Ok(())
}
