//! The runtime sampler.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;

use super::config::{
    MissingKeyPolicy, RATE_COLUMN, Randomness, SampleConfig, TH_COLUMN, units_per_second,
};
use super::hash::{MAX_THRESHOLD, encode_th, rate_of_threshold, threshold_for_rate};
use super::key::{MISSING, group_hashes, hashed_randomness, trace_id_randomness_column};
use super::rules::{Choice, RateTable, Rule, UNASSIGNED};
use super::state::{Policy, WindowState};
use crate::error::OperatorError;
use crate::{Metric, Operator};

const NAME: &str = "sample";

/// What sets the rate of rows that no rule matches.
#[derive(Debug)]
enum DefaultRate {
    /// Index into the choices (the plain `rate`, refined by the rate table).
    Plain(u32),
    Windowed {
        state: WindowState,
        group_by: Vec<String>,
        window_seconds: i64,
        time_field: String,
    },
}

#[derive(Debug, Default)]
struct Counters {
    kept: u64,
    dropped: u64,
    missing_kept: u64,
    missing_dropped: u64,
    missing_fallback: u64,
    rule_hits: Vec<u64>,
    table_hits: u64,
}

/// Reused per-row buffers.
#[derive(Debug, Default)]
struct Scratch {
    randomness: Vec<u64>,
    fallback: Vec<u64>,
    assigned: Vec<u32>,
    groups: Vec<u64>,
}

/// The result of deciding one batch.
pub(crate) struct Decisions {
    pub mask: BooleanBuffer,
    /// Probability of each kept row, in row order.
    pub kept_rates: Vec<f64>,
    /// Threshold of each kept row (only filled when thresholds are recorded).
    pub kept_thresholds: Vec<u64>,
}

pub struct SampleOperator {
    dataset: String,
    key: Vec<String>,
    seed: u64,
    randomness: Randomness,
    missing: MissingKeyPolicy,
    rules: Vec<Rule>,
    table: Option<RateTable>,
    choices: Vec<Choice>,
    default: DefaultRate,
    record_threshold: bool,
    counters: Counters,
    scratch: Scratch,
    lineage: Vec<(String, String)>,
    schema_cache: Option<(SchemaRef, SchemaRef)>,
    /// Test hook: when set, the probability of every row (kept or not; `NaN` for rows
    /// without a key) is appended here.
    pub(crate) all_rates: Option<Vec<f64>>,
}

impl std::fmt::Debug for SampleOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleOperator")
            .field("dataset", &self.dataset)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Fingerprint of the settings that give window state its meaning: the group fields, the
/// window length and the time field. Rates (`per_second`, `events_per_second`, …) are
/// not in it: counts stay meaningful when only the rate changes.
fn state_settings(group_by: &[String], window_seconds: i64, time_field: &str) -> u64 {
    let text = format!(
        "group_by={};window_seconds={window_seconds};time_field={time_field}",
        group_by.join("\u{1f}")
    );
    super::hash::xxh64(text.as_bytes(), 0)
}

impl SampleOperator {
    pub fn new(
        config: &SampleConfig,
        dataset: &str,
        input: &SchemaRef,
    ) -> Result<Self, OperatorError> {
        config.validate(input)?;
        let mut choices = Vec::new();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (index, rule) in config.rules.iter().enumerate() {
            let compiled = Rule::compile(rule, input)
                .map_err(|reason| crate::ConfigError::new(format!("rules[{index}]"), reason))?;
            rules.push(compiled);
            choices.push(Choice::new(rule.rate));
        }
        let table = config.rate_table.as_ref().map(|table| {
            let (compiled, table_choices) = RateTable::compile(table, choices.len() as u32);
            choices.extend(table_choices);
            compiled
        });
        let time_field = config.time_field.clone().unwrap_or_default();
        let (default, mode) = if let Some(rate) = config.rate {
            choices.push(Choice::new(rate));
            (DefaultRate::Plain(choices.len() as u32 - 1), "rate")
        } else if let Some(budget) = &config.budget {
            let policy = Policy::Budget {
                per_window: budget.per_second,
                excess: budget.excess(),
            };
            let settings = state_settings(budget.group_by.names(), 1, &time_field);
            let windowed = DefaultRate::Windowed {
                state: WindowState::new(policy, budget.max_groups).with_settings(settings),
                group_by: budget.group_by.names().to_vec(),
                window_seconds: 1,
                time_field,
            };
            (windowed, "budget")
        } else if let Some(target) = &config.target {
            let policy = Policy::Target {
                per_window: target.events_per_second as f64 * target.window_seconds as f64,
            };
            let window_seconds = i64::try_from(target.window_seconds).unwrap_or(i64::MAX);
            let settings = state_settings(target.group_by.names(), window_seconds, &time_field);
            let windowed = DefaultRate::Windowed {
                state: WindowState::new(policy, target.max_groups).with_settings(settings),
                group_by: target.group_by.names().to_vec(),
                window_seconds,
                time_field,
            };
            (windowed, "target")
        } else {
            unreachable!("validate requires one of rate, budget, target")
        };
        let randomness = match config.randomness {
            Randomness::Hash => "xxh64",
            Randomness::TraceId => "trace_id",
        };
        let lineage = vec![
            ("format".to_owned(), "1".to_owned()),
            ("mode".to_owned(), mode.to_owned()),
            ("randomness".to_owned(), randomness.to_owned()),
            ("seed".to_owned(), config.seed.to_string()),
            ("key".to_owned(), config.key.names().join(",")),
        ];
        Ok(SampleOperator {
            dataset: dataset.to_owned(),
            key: config.key.names().to_vec(),
            seed: config.seed,
            randomness: config.randomness,
            missing: config.on_missing_key.clone(),
            counters: Counters {
                rule_hits: vec![0; rules.len()],
                ..Counters::default()
            },
            rules,
            table,
            choices,
            default,
            record_threshold: config.record_threshold,
            scratch: Scratch::default(),
            lineage,
            schema_cache: None,
            all_rates: None,
        })
    }

    fn output_schema_of(&self, input: &Schema) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        if input.field_with_name(RATE_COLUMN).is_err() {
            fields.push(Arc::new(Field::new(RATE_COLUMN, DataType::Float64, false)));
        }
        if self.record_threshold && input.field_with_name(TH_COLUMN).is_err() {
            fields.push(Arc::new(Field::new(TH_COLUMN, DataType::Utf8, false)));
        }
        Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
    }

    fn cached_output_schema(&mut self, input: &SchemaRef) -> SchemaRef {
        if let Some((cached_input, output)) = &self.schema_cache
            && (Arc::ptr_eq(cached_input, input) || cached_input == input)
        {
            return output.clone();
        }
        let output = self.output_schema_of(input);
        self.schema_cache = Some((input.clone(), output.clone()));
        output
    }

    /// Fills `scratch.randomness` (with fallbacks applied) and `scratch.assigned`.
    fn prepare(&mut self, batch: &RecordBatch) -> Result<(), OperatorError> {
        let other = |reason: String| OperatorError::Other {
            operator: NAME.to_owned(),
            reason,
        };
        let scratch = &mut self.scratch;
        match self.randomness {
            Randomness::Hash => {
                hashed_randomness(batch, &self.key, self.seed, &mut scratch.randomness)
            }
            Randomness::TraceId => {
                trace_id_randomness_column(batch, &self.key[0], &mut scratch.randomness)
            }
        }
        .map_err(other)?;
        if let MissingKeyPolicy::Fallback(fields) = &self.missing
            && scratch.randomness.contains(&MISSING)
        {
            hashed_randomness(batch, fields.names(), self.seed, &mut scratch.fallback)
                .map_err(other)?;
            for (value, fallback) in scratch.randomness.iter_mut().zip(&scratch.fallback) {
                if *value == MISSING && *fallback != MISSING {
                    *value = *fallback;
                    self.counters.missing_fallback += 1;
                }
            }
        }
        scratch.assigned.clear();
        scratch.assigned.resize(batch.num_rows(), UNASSIGNED);
        for (index, rule) in self.rules.iter().enumerate() {
            let matches = rule.matches(batch).map_err(other)?;
            let mut hits = 0;
            for row in matches.set_indices() {
                let slot = &mut scratch.assigned[row];
                if *slot == UNASSIGNED {
                    *slot = index as u32;
                    hits += 1;
                }
            }
            self.counters.rule_hits[index] += hits;
        }
        if let Some(table) = &self.table {
            self.counters.table_hits +=
                table.assign(batch, &mut scratch.assigned).map_err(other)?;
        }
        Ok(())
    }

    /// Decides every row of `batch`. Exposed to the tests, which also read `all_rates`.
    pub(crate) fn decide(&mut self, batch: &RecordBatch) -> Result<Decisions, OperatorError> {
        self.prepare(batch)?;
        let rows = batch.num_rows();
        let record = self.record_threshold;
        let mut kept_rates = Vec::with_capacity(rows);
        let mut kept_thresholds = Vec::with_capacity(if record { rows } else { 0 });
        let keep_missing = !matches!(self.missing, MissingKeyPolicy::Drop);
        let mut missing_kept = 0u64;
        let mut missing_dropped = 0u64;
        let mut all_rates = self.all_rates.take();
        let randomness = &self.scratch.randomness;
        let assigned = &self.scratch.assigned;
        let choices = &self.choices;

        let mut decide_row = |row: usize, default: &mut dyn FnMut(usize) -> Choice| -> bool {
            let value = randomness[row];
            if value == MISSING {
                if let Some(all) = all_rates.as_mut() {
                    all.push(f64::NAN);
                }
                if keep_missing {
                    missing_kept += 1;
                    kept_rates.push(1.0);
                    if record {
                        kept_thresholds.push(0);
                    }
                    return true;
                }
                missing_dropped += 1;
                return false;
            }
            let choice = match assigned[row] {
                UNASSIGNED => default(row),
                index => choices[index as usize],
            };
            if let Some(all) = all_rates.as_mut() {
                all.push(choice.rate);
            }
            if value >= choice.threshold {
                kept_rates.push(choice.rate);
                if record {
                    kept_thresholds.push(choice.threshold);
                }
                true
            } else {
                false
            }
        };

        let mask = match &mut self.default {
            DefaultRate::Plain(index) => {
                let fixed = choices[*index as usize];
                BooleanBuffer::collect_bool(rows, |row| decide_row(row, &mut |_| fixed))
            }
            DefaultRate::Windowed {
                state,
                group_by,
                window_seconds,
                time_field,
            } => {
                let other = |reason: String| OperatorError::Other {
                    operator: NAME.to_owned(),
                    reason,
                };
                group_hashes(batch, group_by, &mut self.scratch.groups).map_err(other)?;
                let groups = &self.scratch.groups;
                let time = batch.column_by_name(time_field).ok_or_else(|| {
                    OperatorError::schema(NAME, format!("time field {time_field:?} is missing"))
                })?;
                let per_window = match time.data_type() {
                    DataType::Timestamp(unit, _) => units_per_second(unit) * *window_seconds,
                    other => {
                        return Err(OperatorError::schema(
                            NAME,
                            format!("time field {time_field:?} is {other}, not a timestamp"),
                        ));
                    }
                };
                let raw = arrow_cast::cast(time, &DataType::Int64)
                    .map_err(|error| OperatorError::arrow(NAME, error))?;
                let raw = raw.as_primitive::<Int64Type>();
                let values = raw.values();
                let nulls = raw.nulls();
                let mut window_rate = |row: usize| {
                    let window = match nulls {
                        Some(nulls) if nulls.is_null(row) => None,
                        _ => Some(values[row].div_euclid(per_window)),
                    };
                    let rate = state.next_rate(groups[row], window);
                    let threshold = threshold_for_rate(rate);
                    Choice {
                        threshold,
                        rate: rate_of_threshold(threshold),
                    }
                };
                BooleanBuffer::collect_bool(rows, |row| decide_row(row, &mut window_rate))
            }
        };
        self.all_rates = all_rates;
        self.counters.missing_kept += missing_kept;
        self.counters.missing_dropped += missing_dropped;
        self.counters.kept += kept_rates.len() as u64;
        self.counters.dropped += (rows - kept_rates.len()) as u64;
        Ok(Decisions {
            mask,
            kept_rates,
            kept_thresholds,
        })
    }
}

/// Parses a `th` value back into a threshold (`None` if malformed).
fn parse_th(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 14 {
        return None;
    }
    let value = u64::from_str_radix(text, 16).ok()?;
    Some(value << (4 * (14 - text.len())))
}

impl Operator for SampleOperator {
    fn name(&self) -> &str {
        NAME
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, OperatorError> {
        Ok(self.output_schema_of(input))
    }

    fn process(&mut self, batch: RecordBatch) -> Result<RecordBatch, OperatorError> {
        let input_schema = batch.schema();
        let output_schema = self.cached_output_schema(&input_schema);
        let Decisions {
            mask,
            kept_rates,
            kept_thresholds,
        } = self.decide(&batch)?;
        let kept = if kept_rates.len() == batch.num_rows() {
            batch
        } else {
            arrow_select::filter::filter_record_batch(&batch, &BooleanArray::new(mask, None))
                .map_err(|error| OperatorError::arrow(NAME, error))?
        };
        let mut columns: Vec<ArrayRef> = kept.columns().to_vec();

        let rates = match input_schema.index_of(RATE_COLUMN) {
            Ok(position) => {
                let upstream = columns[position].as_primitive::<arrow_array::types::Float64Type>();
                let combined: Float64Array = kept_rates
                    .iter()
                    .enumerate()
                    .map(|(row, rate)| {
                        let prior = if upstream.is_valid(row) {
                            upstream.value(row)
                        } else {
                            1.0
                        };
                        Some(prior * rate)
                    })
                    .collect();
                columns[position] = Arc::new(combined);
                None
            }
            Err(_) => Some(Arc::new(Float64Array::from(kept_rates)) as ArrayRef),
        };
        if let Some(rates) = rates {
            columns.push(rates);
        }
        if self.record_threshold {
            let position = input_schema.index_of(TH_COLUMN).ok();
            let upstream = position.map(|p| columns[p].as_string::<i32>().clone());
            let values: StringArray = kept_thresholds
                .iter()
                .enumerate()
                .map(|(row, threshold)| {
                    let prior = upstream
                        .as_ref()
                        .filter(|column| column.is_valid(row))
                        .and_then(|column| parse_th(column.value(row)))
                        .unwrap_or(0)
                        .min(MAX_THRESHOLD);
                    Some(encode_th((*threshold).max(prior)))
                })
                .collect();
            match position {
                Some(position) => columns[position] = Arc::new(values),
                None => columns.push(Arc::new(values)),
            }
        }
        RecordBatch::try_new(output_schema, columns)
            .map_err(|error| OperatorError::arrow(NAME, error))
    }

    fn snapshot(&self) -> Option<Bytes> {
        match &self.default {
            DefaultRate::Plain(_) => None,
            DefaultRate::Windowed { state, .. } => Some(state.snapshot()),
        }
    }

    fn restore(&mut self, state: Bytes) -> Result<(), OperatorError> {
        match &mut self.default {
            DefaultRate::Plain(_) => Ok(()),
            DefaultRate::Windowed { state: window, .. } => window
                .restore(state)
                .map_err(|reason| OperatorError::restore(NAME, reason)),
        }
    }

    fn lineage(&self) -> Vec<(String, String)> {
        self.lineage.clone()
    }

    fn metrics(&self) -> Vec<Metric> {
        let dataset = self.dataset.as_str();
        let counters = &self.counters;
        let mut metrics = vec![
            Metric::new(
                "sample_rows_total",
                &[("dataset", dataset), ("outcome", "kept")],
                counters.kept,
            ),
            Metric::new(
                "sample_rows_total",
                &[("dataset", dataset), ("outcome", "dropped")],
                counters.dropped,
            ),
            Metric::new(
                "sample_missing_key_total",
                &[("dataset", dataset), ("action", "kept")],
                counters.missing_kept,
            ),
            Metric::new(
                "sample_missing_key_total",
                &[("dataset", dataset), ("action", "dropped")],
                counters.missing_dropped,
            ),
            Metric::new(
                "sample_missing_key_total",
                &[("dataset", dataset), ("action", "fallback")],
                counters.missing_fallback,
            ),
        ];
        for (index, hits) in counters.rule_hits.iter().enumerate() {
            let rule = index.to_string();
            metrics.push(Metric::new(
                "sample_rule_hits_total",
                &[("dataset", dataset), ("rule", &rule)],
                *hits,
            ));
        }
        if self.table.is_some() {
            metrics.push(Metric::new(
                "sample_rate_table_hits_total",
                &[("dataset", dataset)],
                counters.table_hits,
            ));
        }
        if let DefaultRate::Windowed { state, .. } = &self.default {
            let c = state.counters;
            for (name, value) in [
                ("sample_late_rows_total", c.late_rows),
                ("sample_no_time_rows_total", c.no_time_rows),
                ("sample_overflow_group_rows_total", c.overflow_rows),
                ("sample_windows_closed_total", c.windows_closed),
            ] {
                metrics.push(Metric::new(name, &[("dataset", dataset)], value));
            }
        }
        metrics
    }
}
