//! The runtime `redact` operator: applies a compiled [`Profile`] to batches.
//!
//! A string column is scanned one of two ways, with the same rows and counts either way:
//! row by row (column hints over the value buffer, then the gates and the search per row,
//! with a memo of number-shape verdicts for repeated long values), or, when its values
//! repeat (user agents, content types, header values), once per distinct value, each row
//! then taking its value's verdict ([`Distinct`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{GenericStringBuilder, StringViewBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, GenericListArray, GenericStringArray, MapArray,
    OffsetSizeTrait, RecordBatch, RecordBatchOptions, StringViewArray, StructArray, new_null_array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};
use hmac::Mac;

use super::config::{FieldRule, Profile, is_string};
use super::detectors::{Hit, Prescreen, ScanCache, truncate_ip};
use crate::error::OperatorError;
use crate::{Metric, Operator};

const NAME: &str = "redact";

/// What happens to one input column.
#[derive(Debug, Clone)]
enum Action {
    /// Passed through (no strings inside, or `keep`).
    Keep,
    Scan,
    Drop,
    Rule(FieldRule),
}

#[derive(Debug)]
struct Plan {
    input: SchemaRef,
    output: SchemaRef,
    actions: Vec<Action>,
}

/// Per-batch hit counts of one column: one slot per detector, then one for values
/// replaced because of their map key.
struct Counts {
    hits: Vec<u64>,
}

pub(crate) struct RedactOperator {
    profile: Arc<Profile>,
    cache: ScanCache,
    plan: Plan,
    /// (rule, field) → hits since build.
    hits: BTreeMap<(String, String), u64>,
    strings_total: u64,
    strings_searched: u64,
    scratch: Vec<Hit>,
}

impl std::fmt::Debug for RedactOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactOperator")
            .field("profile", &self.profile.hash)
            .finish_non_exhaustive()
    }
}

fn contains_strings(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => contains_strings(v),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            contains_strings(f.data_type())
        }
        DataType::Map(f, _) => contains_strings(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| contains_strings(f.data_type())),
        _ => false,
    }
}

impl Plan {
    fn new(profile: &Profile, input: &SchemaRef) -> Plan {
        let mut actions = Vec::with_capacity(input.fields().len());
        let mut fields = Vec::with_capacity(input.fields().len());
        for field in input.fields() {
            let action = match profile.fields.get(field.name()) {
                // The sampler's columns say how many records each kept row stands for: the
                // only record of what it dropped. Numbers, never personal data; kept
                // whatever `unlisted_fields` says (config refuses other rules for them).
                _ if crate::sample::is_sample_column(field.name()) => Action::Keep,
                Some(FieldRule::Keep) => Action::Keep,
                Some(FieldRule::Scan) => Action::Scan,
                Some(FieldRule::Drop) => Action::Drop,
                Some(rule) => Action::Rule(rule.clone()),
                None if profile.unlisted_drop => Action::Drop,
                None => Action::Scan,
            };
            let action = match action {
                Action::Scan if !contains_strings(field.data_type()) => Action::Keep,
                // A rule that needs strings on a column that changed type: fail closed.
                Action::Rule(ref rule)
                    if !matches!(rule, FieldRule::Null) && !is_string(field.data_type()) =>
                {
                    Action::Rule(FieldRule::Null)
                }
                other => other,
            };
            if profile.shadow {
                fields.push(field.clone());
            } else {
                match &action {
                    Action::Drop => {}
                    Action::Rule(FieldRule::Null) | Action::Rule(FieldRule::TruncateIp { .. }) => {
                        fields.push(Arc::new(field.as_ref().clone().with_nullable(true)))
                    }
                    _ => fields.push(field.clone()),
                }
            }
            actions.push(action);
        }
        Plan {
            input: input.clone(),
            output: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
            actions,
        }
    }
}

impl RedactOperator {
    pub(crate) fn new(profile: Arc<Profile>, input: SchemaRef) -> RedactOperator {
        let plan = Plan::new(&profile, &input);
        RedactOperator {
            cache: profile.scanner.create_cache(),
            profile,
            plan,
            hits: BTreeMap::new(),
            strings_total: 0,
            strings_searched: 0,
            scratch: Vec::new(),
        }
    }

    fn count(&mut self, rule: &str, field: &str, n: u64) {
        if n == 0 {
            return;
        }
        *self
            .hits
            .entry((rule.to_owned(), field.to_owned()))
            .or_insert(0) += n;
    }

    fn flush_counts(&mut self, field: &str, counts: &Counts) {
        let detectors = self.profile.detectors.len();
        for (i, &n) in counts.hits.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let rule = if i < detectors {
                self.profile.detectors[i].name.clone()
            } else {
                "sensitive_key".to_owned()
            };
            self.count(&rule, field, n);
        }
    }

    fn replacement(&self, detector: usize, matched: &str, out: &mut String) {
        let info = &self.profile.detectors[detector];
        match (&self.profile.hmac, info.tokenize) {
            (Some(mac), true) => {
                let placeholder = info.placeholder.trim_end_matches(']');
                out.push_str(placeholder);
                out.push(':');
                out.push_str(&token_hex(mac, matched.as_bytes()));
                out.push(']');
            }
            _ => out.push_str(&info.placeholder),
        }
    }

    /// Rewrites one string; returns `None` when nothing in it matched. `hint`: the
    /// string's bits from [`Scanner::column_hints`](super::detectors::Scanner::column_hints),
    /// if the column was hinted.
    fn redact_str(&mut self, value: &str, hint: Option<u8>, counts: &mut Counts) -> Option<String> {
        self.strings_total += 1;
        let (searched, new) = self.rewrite(value, hint);
        self.strings_searched += u64::from(searched);
        if new.is_some() {
            for hit in &self.scratch {
                counts.hits[hit.detector] += 1;
            }
        }
        new
    }

    /// [`RedactOperator::redact_str`] without counting anything: whether the string was
    /// searched, and its new value if something matched (the hits are left in
    /// `self.scratch`).
    fn rewrite(&mut self, value: &str, hint: Option<u8>) -> (bool, Option<String>) {
        let mut hits = std::mem::take(&mut self.scratch);
        hits.clear();
        let scanner = &self.profile.scanner;
        let searched = match hint {
            Some(hint) => scanner.scan_hinted(&mut self.cache, value, hint, &mut hits),
            None => scanner.scan(&mut self.cache, value, &mut hits),
        };
        if hits.is_empty() {
            self.scratch = hits;
            return (searched, None);
        }
        let mut out = String::with_capacity(value.len() + 16);
        let mut last = 0;
        for hit in &hits {
            out.push_str(&value[last..hit.start]);
            self.replacement(hit.detector, &value[hit.start..hit.end], &mut out);
            last = hit.end;
        }
        out.push_str(&value[last..]);
        self.scratch = hits;
        (searched, Some(out))
    }

    /// Scans a Utf8 / LargeUtf8 array. Unchanged rows are copied in contiguous runs; if no
    /// row changed the caller keeps the original array. The new array is put together in a
    /// string builder from whole strings (runs of the input, rewritten values), so it needs
    /// no second UTF-8 validation.
    fn scan_generic<O: OffsetSizeTrait>(
        &mut self,
        array: &GenericStringArray<O>,
        sensitive: Option<&[bool]>,
        counts: &mut Counts,
    ) -> Result<Option<ArrayRef>, OperatorError> {
        if let Some(distinct) = Distinct::of(array) {
            return self.scan_distinct(array, &distinct, sensitive, counts);
        }
        let offsets = array.value_offsets();
        let data = array.value_data();
        let mut out = Rebuild::default();
        let key_slot = counts.hits.len() - 1;
        let profile = Arc::clone(&self.profile);
        let scanner = &profile.scanner;
        let hints = scanner.column_hints(data, offsets);
        let screen = scanner.screen();
        // Strings no gate admits, counted here rather than one by one.
        let mut skipped = 0u64;
        // Number shapes are the costly gate; values repeated across the batch are walked once.
        let mut memo = Memo::default();
        for i in 0..array.len() {
            if array.is_null(i) {
                continue;
            }
            let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            let admitted = match screen.prescreen(hints[i], end - start) {
                Prescreen::Search => true,
                Prescreen::Skip => false,
                Prescreen::Shapes if memo.off => scanner.shapes_admit(&data[start..end]),
                // Short strings without a long digit run (host names) are cheaper to probe
                // than to look up; long ones (user agents, accept headers) are not.
                Prescreen::Shapes => {
                    (end - start >= MEMO_FIRST_LEN || scanner.may_have_shapes(&data[start..end]))
                        && memo.get(data, start, end, |bytes| scanner.shapes_admit(bytes))
                }
            };
            let replaced = if sensitive.is_some_and(|s| s[i]) {
                counts.hits[key_slot] += 1;
                Some(self.profile.key_placeholder.clone())
            } else if !admitted {
                // no gate can pass: what `redact_str` would conclude, without the set-up
                skipped += 1;
                None
            } else {
                self.redact_str(array.value(i), Some(hints[i]), counts)
            };
            if let Some(new) = replaced {
                out.replace(array, i, &new)?;
            }
        }
        self.strings_total += skipped;
        out.finish(array)
    }

    /// [`RedactOperator::scan_generic`] for an array whose values mostly repeat: each
    /// distinct value is looked at once (column hints over the distinct values, the gates,
    /// the search), and every row takes its value's verdict. Rows, counts and metrics come
    /// out as the row-by-row scan would have them.
    fn scan_distinct<O: OffsetSizeTrait>(
        &mut self,
        array: &GenericStringArray<O>,
        distinct: &Distinct,
        sensitive: Option<&[bool]>,
        counts: &mut Counts,
    ) -> Result<Option<ArrayRef>, OperatorError> {
        let profile = Arc::clone(&self.profile);
        let scanner = &profile.scanner;
        let hints = scanner.column_hints(&distinct.data, &distinct.offsets);
        let screen = scanner.screen();
        let verdicts: Vec<Verdict> = (0..distinct.first_row.len())
            .map(|k| {
                let bytes = distinct.value(k);
                let admitted = match screen.prescreen(hints[k], bytes.len()) {
                    Prescreen::Search => true,
                    Prescreen::Skip => false,
                    Prescreen::Shapes => {
                        scanner.may_have_shapes(bytes) && scanner.shapes_admit(bytes)
                    }
                };
                if !admitted {
                    return Verdict::default();
                }
                let (searched, new) =
                    self.rewrite(array.value(distinct.first_row[k]), Some(hints[k]));
                let detectors = match new {
                    Some(_) => self.scratch.iter().map(|hit| hit.detector).collect(),
                    None => Vec::new(),
                };
                Verdict {
                    searched,
                    new,
                    detectors,
                }
            })
            .collect();
        let key_slot = counts.hits.len() - 1;
        let (mut total, mut searched) = (0u64, 0u64);
        let mut out = Rebuild::default();
        for (i, &id) in distinct.ids.iter().enumerate() {
            if array.is_null(i) {
                continue;
            }
            if sensitive.is_some_and(|s| s[i]) {
                counts.hits[key_slot] += 1;
                out.replace(array, i, &profile.key_placeholder)?;
                continue;
            }
            let verdict = &verdicts[id as usize];
            total += 1;
            searched += u64::from(verdict.searched);
            if let Some(new) = &verdict.new {
                for &detector in &verdict.detectors {
                    counts.hits[detector] += 1;
                }
                out.replace(array, i, new)?;
            }
        }
        self.strings_total += total;
        self.strings_searched += searched;
        out.finish(array)
    }

    fn scan_view(
        &mut self,
        array: &StringViewArray,
        sensitive: Option<&[bool]>,
        counts: &mut Counts,
    ) -> Result<Option<ArrayRef>, OperatorError> {
        let mut rewritten: Vec<(usize, String)> = Vec::new();
        let key_slot = counts.hits.len() - 1;
        for i in 0..array.len() {
            if array.is_null(i) {
                continue;
            }
            if sensitive.is_some_and(|s| s[i]) {
                counts.hits[key_slot] += 1;
                rewritten.push((i, self.profile.key_placeholder.clone()));
            } else if let Some(new) = self.redact_str(array.value(i), None, counts) {
                rewritten.push((i, new));
            }
        }
        if rewritten.is_empty() {
            return Ok(None);
        }
        let mut builder = StringViewBuilder::with_capacity(array.len());
        let mut next = rewritten.iter().peekable();
        for i in 0..array.len() {
            if array.is_null(i) {
                builder.append_null();
            } else if next.peek().is_some_and(|(row, _)| *row == i) {
                let (_, value) = next.next().expect("peeked");
                builder.append_value(value);
            } else {
                builder.append_value(array.value(i));
            }
        }
        Ok(Some(Arc::new(builder.finish())))
    }

    /// Runs the detectors over every string inside `array`; `None` if nothing changed.
    fn scan_array(
        &mut self,
        array: &ArrayRef,
        counts: &mut Counts,
    ) -> Result<Option<ArrayRef>, OperatorError> {
        let arrow = |e: ArrowError| OperatorError::arrow(NAME, e);
        Ok(match array.data_type() {
            DataType::Utf8 => self.scan_generic(array.as_string::<i32>(), None, counts)?,
            DataType::LargeUtf8 => self.scan_generic(array.as_string::<i64>(), None, counts)?,
            DataType::Utf8View => self.scan_view(array.as_string_view(), None, counts)?,
            DataType::Dictionary(_, values) if contains_strings(values) => {
                let dict = array.as_any_dictionary();
                self.scan_array(dict.values(), counts)?
                    .map(|values| dict.with_values(values))
            }
            DataType::Struct(fields) => {
                let parent = array.as_struct();
                let mut columns = parent.columns().to_vec();
                let mut changed = false;
                for column in columns.iter_mut() {
                    if let Some(new) = self.scan_array(column, counts)? {
                        *column = new;
                        changed = true;
                    }
                }
                if !changed {
                    return Ok(None);
                }
                let result = StructArray::try_new_with_length(
                    fields.clone(),
                    columns,
                    parent.nulls().cloned(),
                    parent.len(),
                )
                .map_err(arrow)?;
                Some(Arc::new(result))
            }
            DataType::List(field) => {
                let list = array.as_list::<i32>();
                let (offsets, values) = used_part(list.offsets(), list.values());
                match self.scan_array(&values, counts)? {
                    None => None,
                    Some(values) => Some(Arc::new(
                        GenericListArray::<i32>::try_new(
                            field.clone(),
                            offsets,
                            values,
                            list.nulls().cloned(),
                        )
                        .map_err(arrow)?,
                    )),
                }
            }
            DataType::LargeList(field) => {
                let list = array.as_list::<i64>();
                let (offsets, values) = used_part(list.offsets(), list.values());
                match self.scan_array(&values, counts)? {
                    None => None,
                    Some(values) => Some(Arc::new(
                        GenericListArray::<i64>::try_new(
                            field.clone(),
                            offsets,
                            values,
                            list.nulls().cloned(),
                        )
                        .map_err(arrow)?,
                    )),
                }
            }
            DataType::FixedSizeList(field, size) => {
                let list = array.as_fixed_size_list();
                match self.scan_array(list.values(), counts)? {
                    None => None,
                    Some(values) => Some(Arc::new(
                        FixedSizeListArray::try_new(
                            field.clone(),
                            *size,
                            values,
                            list.nulls().cloned(),
                        )
                        .map_err(arrow)?,
                    )),
                }
            }
            DataType::Map(field, ordered) => {
                let map = array.as_map();
                let entries: ArrayRef = Arc::new(map.entries().clone());
                let (offsets, entries) = used_part(map.offsets(), &entries);
                let entries = entries.as_struct();
                let keys = entries.column(0);
                let values = entries.column(1);
                let sensitive: Option<Vec<bool>> = match keys.data_type() {
                    DataType::Utf8 => Some(self.sensitive_keys(keys.as_string::<i32>())),
                    DataType::LargeUtf8 => Some(self.sensitive_keys(keys.as_string::<i64>())),
                    _ => None,
                };
                let sensitive = sensitive.filter(|s| s.iter().any(|b| *b));
                let new_values = match values.data_type() {
                    DataType::Utf8 => {
                        self.scan_generic(values.as_string::<i32>(), sensitive.as_deref(), counts)?
                    }
                    DataType::LargeUtf8 => {
                        self.scan_generic(values.as_string::<i64>(), sensitive.as_deref(), counts)?
                    }
                    DataType::Utf8View => {
                        self.scan_view(values.as_string_view(), sensitive.as_deref(), counts)?
                    }
                    _ => self.scan_array(values, counts)?,
                };
                match new_values {
                    None => None,
                    Some(new_values) => {
                        let entries = StructArray::try_new_with_length(
                            entries.fields().clone(),
                            vec![keys.clone(), new_values],
                            entries.nulls().cloned(),
                            entries.len(),
                        )
                        .map_err(arrow)?;
                        Some(Arc::new(
                            MapArray::try_new(
                                field.clone(),
                                offsets,
                                entries,
                                map.nulls().cloned(),
                                *ordered,
                            )
                            .map_err(arrow)?,
                        ))
                    }
                }
            }
            _ => None,
        })
    }

    fn sensitive_keys<O: OffsetSizeTrait>(&self, keys: &GenericStringArray<O>) -> Vec<bool> {
        let names = &self.profile.sensitive_keys;
        (0..keys.len())
            .map(|i| keys.is_valid(i) && names.matches_bytes(keys.value(i).as_bytes()))
            .collect()
    }

    /// Applies a value rule (token, mask, truncate_ip, constant) to a string column.
    fn apply_rule(&self, rule: &FieldRule, array: &ArrayRef) -> Result<ArrayRef, OperatorError> {
        let mac = self.profile.hmac.as_ref();
        let f = |value: &str| -> Option<String> {
            match rule {
                FieldRule::Token => mac.map(|m| format!("tok_{}", token_hex(m, value.as_bytes()))),
                FieldRule::Mask {
                    keep_last,
                    mask_char,
                } => Some(mask(value, *keep_last, *mask_char)),
                FieldRule::TruncateIp {
                    ipv4_prefix,
                    ipv6_prefix,
                } => truncate_ip(value, *ipv4_prefix, *ipv6_prefix),
                FieldRule::Constant { value } => Some(value.clone()),
                _ => None,
            }
        };
        Ok(match array.data_type() {
            DataType::Utf8 => map_generic(array.as_string::<i32>(), f),
            DataType::LargeUtf8 => map_generic(array.as_string::<i64>(), f),
            DataType::Utf8View => {
                let array = array.as_string_view();
                let mut builder = StringViewBuilder::with_capacity(array.len());
                for value in array.iter() {
                    builder.append_option(value.and_then(f));
                }
                Arc::new(builder.finish())
            }
            _ => new_null_array(array.data_type(), array.len()),
        })
    }
}

fn map_generic<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    f: impl Fn(&str) -> Option<String>,
) -> ArrayRef {
    let mut builder =
        GenericStringBuilder::<O>::with_capacity(array.len(), array.value_data().len());
    for value in array.iter() {
        builder.append_option(value.and_then(&f));
    }
    Arc::new(builder.finish())
}

/// What scanning one distinct value gave (see [`RedactOperator::scan_distinct`]).
#[derive(Default)]
struct Verdict {
    /// It passed the gates and was searched.
    searched: bool,
    /// Its rewritten form, if something matched.
    new: Option<String>,
    /// The detector of each hit in it.
    detectors: Vec<usize>,
}

/// The distinct values of a string array, when they repeat enough to be worth finding:
/// user agents, content types, most header values. Values are compared by their bytes;
/// copies of the distinct ones are laid out back to back like an array's value buffer, so
/// that [`Scanner::column_hints`](super::detectors::Scanner::column_hints) passes over them
/// as over a column.
struct Distinct {
    /// Per row, the index of its value among the distinct ones (0 for a null row).
    ids: Vec<u32>,
    data: Vec<u8>,
    offsets: Vec<i64>,
    /// A row holding each distinct value.
    first_row: Vec<usize>,
}

/// Rows looked at before deciding whether an array's values repeat: at most half of
/// them may be distinct, and at most half of all rows. Arrays shorter than this are
/// scanned row by row.
const DISTINCT_TRIAL: usize = 256;
/// Arrays whose values are shorter than this on average are scanned row by row.
const DISTINCT_MIN_LEN: usize = 16;

impl Distinct {
    fn value(&self, k: usize) -> &[u8] {
        &self.data[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }

    /// `None` when the values do not repeat enough (see [`DISTINCT_TRIAL`]).
    fn of<O: OffsetSizeTrait>(array: &GenericStringArray<O>) -> Option<Distinct> {
        let rows = array.len();
        if rows < DISTINCT_TRIAL {
            return None;
        }
        let offsets = array.value_offsets();
        let data = array.value_data();
        // Short values (methods, country codes) cost less to scan than to look up.
        if offsets[rows].as_usize() - offsets[0].as_usize() < DISTINCT_MIN_LEN * rows {
            return None;
        }
        let mut distinct = Distinct {
            ids: Vec::with_capacity(rows),
            data: Vec::new(),
            offsets: vec![0],
            first_row: Vec::new(),
        };
        let mut hashes: Vec<u64> = Vec::new();
        // Open addressing over distinct ids plus one (0: empty), kept at most half full:
        // sized for the trial, then once for the whole array.
        let mut slots = vec![0u32; 2 * DISTINCT_TRIAL];
        let mut limit = DISTINCT_TRIAL / 2;
        for i in 0..rows {
            if i == DISTINCT_TRIAL {
                limit = rows / 2;
                slots = rehash(&hashes, (2 * limit).next_power_of_two());
            }
            if array.is_null(i) {
                distinct.ids.push(0);
                continue;
            }
            let bytes = &data[offsets[i].as_usize()..offsets[i + 1].as_usize()];
            let hash = hash_bytes(bytes);
            let mask = slots.len() - 1;
            let mut at = hash as usize & mask;
            let id = loop {
                let slot = slots[at];
                if slot == 0 {
                    break None;
                }
                let k = slot as usize - 1;
                if hashes[k] == hash && distinct.value(k) == bytes {
                    break Some(k as u32);
                }
                at = (at + 1) & mask;
            };
            let id = match id {
                Some(id) => id,
                None => {
                    let k = distinct.first_row.len();
                    if k >= limit {
                        return None;
                    }
                    distinct.data.extend_from_slice(bytes);
                    distinct.offsets.push(distinct.data.len() as i64);
                    distinct.first_row.push(i);
                    hashes.push(hash);
                    slots[at] = k as u32 + 1;
                    k as u32
                }
            };
            distinct.ids.push(id);
        }
        Some(distinct)
    }
}

/// The part of a list's (or map's) child array that its rows use, with the offsets
/// rebased onto it. A sliced list keeps its whole child array: the entries outside the
/// slice are not rows of this batch, and scanning them would count their hits too.
fn used_part<O: OffsetSizeTrait>(
    offsets: &OffsetBuffer<O>,
    child: &ArrayRef,
) -> (OffsetBuffer<O>, ArrayRef) {
    let first = offsets[0];
    let last = offsets[offsets.len() - 1];
    if first.as_usize() == 0 && last.as_usize() == child.len() {
        return (offsets.clone(), Arc::clone(child));
    }
    let rebased: Vec<O> = offsets.iter().map(|&o| o - first).collect();
    (
        OffsetBuffer::new(ScalarBuffer::from(rebased)),
        child.slice(first.as_usize(), (last - first).as_usize()),
    )
}

/// Whether [`RedactOperator::scan_generic`] takes the distinct-value path for `array`.
#[cfg(test)]
pub(super) fn scans_distinct(array: &GenericStringArray<i32>) -> bool {
    Distinct::of(array).is_some()
}

/// A table of `size` slots (a power of two) holding the ids of `hashes` (see
/// [`Distinct::of`]).
fn rehash(hashes: &[u64], size: usize) -> Vec<u32> {
    let mut slots = vec![0u32; size];
    for (k, &hash) in hashes.iter().enumerate() {
        let mut at = hash as usize & (size - 1);
        while slots[at] != 0 {
            at = (at + 1) & (size - 1);
        }
        slots[at] = k as u32 + 1;
    }
    slots
}

/// A string array rebuilt only if some row changes: unchanged rows are copied in runs.
struct Rebuild<O: OffsetSizeTrait> {
    out: Option<GenericStringBuilder<O>>,
    /// First row of the pending run of unchanged rows not yet copied into `out`.
    run_start: usize,
}

impl<O: OffsetSizeTrait> Default for Rebuild<O> {
    fn default() -> Self {
        Rebuild {
            out: None,
            run_start: 0,
        }
    }
}

impl<O: OffsetSizeTrait> Rebuild<O> {
    /// Row `i` (after every row replaced so far) becomes `new`.
    fn replace(
        &mut self,
        array: &GenericStringArray<O>,
        i: usize,
        new: &str,
    ) -> Result<(), OperatorError> {
        let builder = self.out.get_or_insert_with(|| {
            GenericStringBuilder::with_capacity(array.len(), array.value_data().len() + 64)
        });
        copy_run(array, self.run_start, i, builder)?;
        let len = builder.values_slice().len() + new.len();
        if O::from_usize(len).is_none() {
            return Err(OperatorError::arrow(
                NAME,
                ArrowError::OffsetOverflowError(len),
            ));
        }
        builder.append_value(new);
        self.run_start = i + 1;
        Ok(())
    }

    /// The rebuilt array, or `None` if no row changed (the caller keeps the input).
    fn finish(self, array: &GenericStringArray<O>) -> Result<Option<ArrayRef>, OperatorError> {
        let Some(mut builder) = self.out else {
            return Ok(None);
        };
        copy_run(array, self.run_start, array.len(), &mut builder)?;
        Ok(Some(Arc::new(builder.finish())))
    }
}

/// Verdicts of a pure function of a string's bytes
/// ([`Scanner::shapes_admit`](super::detectors::Scanner::shapes_admit)) for the distinct
/// values of one string array, so that a value repeated across the rows of a batch (user
/// agents, accept headers, origin addresses) is looked at once. The
/// memo returns what the function would, so it changes no decision. Values are kept as
/// spans of the array's own value buffer (no copies); an array whose values rarely repeat
/// (request ids, timestamps) turns it off after a trial.
#[derive(Default)]
struct Memo {
    /// Open addressing, [`MEMO_SLOTS`] slots once used.
    slots: Vec<MemoSlot>,
    used: usize,
    lookups: usize,
    hits: usize,
    off: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct MemoSlot {
    hash: u64,
    start: usize,
    end: usize,
    /// 0: empty; 1: false; 2: true.
    state: u8,
}

const MEMO_SLOTS: usize = 1024;
/// Strings at least this long are looked up in the memo before any probe.
const MEMO_FIRST_LEN: usize = 48;
/// Kept below half full, so that probe sequences stay short.
const MEMO_MAX: usize = MEMO_SLOTS / 2;
/// Lookups after which a memo that hit less than a quarter of them is turned off.
const MEMO_TRIAL: usize = 256;

impl Memo {
    /// `f(&data[start..end])`, remembered for the rest of the array. All calls on one memo
    /// must pass the same `data` and `f`.
    fn get(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        f: impl FnOnce(&[u8]) -> bool,
    ) -> bool {
        let bytes = &data[start..end];
        if self.off {
            return f(bytes);
        }
        if self.lookups == MEMO_TRIAL && self.hits * 4 < MEMO_TRIAL {
            self.off = true;
            self.slots = Vec::new();
            return f(bytes);
        }
        if self.slots.is_empty() {
            self.slots = vec![MemoSlot::default(); MEMO_SLOTS];
        }
        self.lookups += 1;
        let hash = hash_bytes(bytes);
        let mut at = hash as usize & (MEMO_SLOTS - 1);
        loop {
            let slot = &self.slots[at];
            if slot.state == 0 {
                break;
            }
            if slot.hash == hash
                && slot.end - slot.start == bytes.len()
                && data.get(slot.start..slot.end) == Some(bytes)
            {
                self.hits += 1;
                return slot.state == 2;
            }
            at = (at + 1) & (MEMO_SLOTS - 1);
        }
        let verdict = f(bytes);
        if self.used < MEMO_MAX {
            self.slots[at] = MemoSlot {
                hash,
                start,
                end,
                state: 1 + u8::from(verdict),
            };
            self.used += 1;
        }
        verdict
    }
}

/// A fast, unkeyed hash of `bytes`: the length and three 8-byte words (first, middle,
/// last). Values that differ elsewhere collide, which only costs a byte comparison: every
/// hit is confirmed by comparing the bytes.
fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let n = bytes.len();
    let mut h = (n as u64).wrapping_mul(K);
    if n < 8 {
        for &b in bytes {
            h = (h.rotate_left(26) ^ u64::from(b)).wrapping_mul(K);
        }
    } else {
        for at in [0, (n / 2).min(n - 8), n - 8] {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            h = (h.rotate_left(26) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }
    h ^ (h >> 32)
}

/// Appends rows `from..to` of `array` (nulls included) to `builder` unchanged.
fn copy_run<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    from: usize,
    to: usize,
    builder: &mut GenericStringBuilder<O>,
) -> Result<(), OperatorError> {
    if from >= to {
        return Ok(());
    }
    builder
        .append_array(&array.slice(from, to - from))
        .map_err(|e| OperatorError::arrow(NAME, e))
}

/// First 16 bytes of HMAC-SHA256(key, value), hex.
pub(crate) fn token_hex(mac: &hmac::Hmac<sha2::Sha256>, value: &[u8]) -> String {
    let mut mac = mac.clone();
    mac.update(value);
    let digest = mac.finalize().into_bytes();
    hex::encode(&digest[..16])
}

pub(crate) fn mask(value: &str, keep_last: usize, mask_char: char) -> String {
    let chars = value.chars().count();
    let hidden = if chars <= keep_last {
        chars
    } else {
        chars - keep_last
    };
    let mut out = String::with_capacity(value.len());
    for (i, ch) in value.chars().enumerate() {
        out.push(if i < hidden { mask_char } else { ch });
    }
    out
}

fn count_valid(array: &ArrayRef) -> u64 {
    (array.len() - array.logical_null_count()) as u64
}

impl Operator for RedactOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, OperatorError> {
        if input == &self.plan.input {
            return Ok(self.plan.output.clone());
        }
        Ok(Plan::new(&self.profile, input).output)
    }

    fn process(&mut self, batch: RecordBatch) -> Result<RecordBatch, OperatorError> {
        if batch.schema() != self.plan.input {
            self.plan = Plan::new(&self.profile, &batch.schema());
        }
        let schema = batch.schema();
        let actions = self.plan.actions.clone();
        let slots = self.profile.detectors.len() + 1;
        let mut columns = Vec::with_capacity(actions.len());
        for ((column, field), action) in batch.columns().iter().zip(schema.fields()).zip(&actions) {
            let name = field.name();
            match action {
                Action::Keep => columns.push(column.clone()),
                Action::Drop => {
                    self.count("field:drop", name, count_valid(column));
                }
                Action::Rule(FieldRule::Null) => {
                    self.count("field:null", name, count_valid(column));
                    columns.push(new_null_array(column.data_type(), column.len()));
                }
                Action::Rule(rule) => {
                    self.count(
                        &format!("field:{}", rule.label()),
                        name,
                        count_valid(column),
                    );
                    columns.push(self.apply_rule(rule, column)?);
                }
                Action::Scan => {
                    let mut counts = Counts {
                        hits: vec![0; slots],
                    };
                    let new = self.scan_array(column, &mut counts)?;
                    self.flush_counts(name, &counts);
                    columns.push(new.unwrap_or_else(|| column.clone()));
                }
            }
        }
        if self.profile.shadow {
            return Ok(batch);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.plan.output.clone(), columns, &options)
            .map_err(|e| OperatorError::arrow(NAME, e))
    }

    fn lineage(&self) -> Vec<(String, String)> {
        vec![
            ("redact.profile_hash".to_owned(), self.profile.hash.clone()),
            (
                "redact.mode".to_owned(),
                if self.profile.shadow {
                    "shadow"
                } else {
                    "enforce"
                }
                .to_owned(),
            ),
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        let mode = if self.profile.shadow {
            "shadow"
        } else {
            "enforce"
        };
        let mut out: Vec<Metric> = self
            .hits
            .iter()
            .map(|((rule, field), &n)| {
                Metric::new(
                    "redact_hits_total",
                    &[("rule", rule), ("field", field), ("mode", mode)],
                    n,
                )
            })
            .collect();
        out.push(Metric::new("redact_strings_total", &[], self.strings_total));
        out.push(Metric::new(
            "redact_strings_searched_total",
            &[],
            self.strings_searched,
        ));
        out
    }
}
