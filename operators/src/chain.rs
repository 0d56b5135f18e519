//! A dataset's operators, run in order.
//!
//! Each operator has an identity: its type plus its name (`name = "..."` in the config,
//! the type when not given; [`crate::config::check_names`] makes names unique within a
//! chain). State is saved under that identity and restored by it, so a config change that
//! adds, removes or reorders operators restores every operator that is still there and
//! starts the others fresh:
//!
//! | saved state | operator in the new chain | outcome |
//! |---|---|---|
//! | type and name | same type and name | restored |
//! | type and name | none, or one that keeps no state in its current settings | dropped ([`RestoreReport::dropped`]) |
//! | type, no name (saved before names existed) | same type at the same position, else the one of that type named after its type | restored |
//! | any | matched, but its `restore` refuses the bytes (settings changed the meaning of the state) | the operator starts fresh |
//! | none | a stateful operator | the operator starts fresh |

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{BuildContext, OperatorSpec};
use crate::error::OperatorError;
use crate::{Metric, Operator};

/// One operator of a chain with its identity.
struct Step {
    /// The operator's type (`sample`, `redact`, `enrich`).
    kind: &'static str,
    /// Its name in the chain (the type unless configured).
    name: String,
    operator: Box<dyn Operator>,
}

/// The operators of one (dataset, partition), in config order.
pub struct Chain {
    steps: Vec<Step>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Chain").field("operators", &names).finish()
    }
}

/// The state of every stateful operator of a chain, as stored in a ledger entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    pub operators: Vec<SavedState>,
}

/// One operator's snapshot and the identity it was taken under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// Position in the chain that took the snapshot.
    pub position: usize,
    /// The operator's type.
    pub kind: String,
    /// The operator's name; `None` in states saved before operators had names.
    pub name: Option<String>,
    pub bytes: Vec<u8>,
}

impl ChainState {
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}

/// What [`Chain::restore`] did with one operator of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The operator keeps no state.
    Stateless,
    /// State saved under the same type and name was restored.
    Restored,
    /// A state saved before operators had names was restored, matched by type and
    /// position (or by type, for the operator named after its type).
    RestoredLegacy { saved_position: usize },
    /// No state was saved for this operator: it starts fresh.
    NoState,
    /// The saved state was refused (for example a setting that gives the state its
    /// meaning changed): the operator starts fresh.
    Refused { reason: String },
}

/// One line of a [`RestoreReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRestore {
    pub position: usize,
    pub kind: String,
    pub name: String,
    pub outcome: RestoreOutcome,
}

/// What [`Chain::restore`] did: one line per operator of the chain, and the saved states
/// that no operator took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub operators: Vec<OperatorRestore>,
    pub dropped: Vec<SavedState>,
}

/// Why a batch failed inside the chain: which operator (its name), and the error.
#[derive(Debug)]
pub struct ChainError {
    pub stage: String,
    pub error: OperatorError,
}

impl Chain {
    /// Builds every operator of `specs`, threading the schema through them. The names
    /// must have passed [`crate::config::check_names`].
    pub fn build(
        specs: &[OperatorSpec],
        dataset: &str,
        input_schema: SchemaRef,
        secrets: &dyn crate::SecretSource,
        resources: &crate::enrich::Resources,
    ) -> Result<Chain, OperatorError> {
        if let Err((position, error)) = crate::config::check_names(specs) {
            return Err(OperatorError::Config(crate::ConfigError::new(
                format!("operators[{position}].{}", error.key),
                error.reason,
            )));
        }
        let mut steps = Vec::with_capacity(specs.len());
        let mut schema = input_schema.clone();
        for spec in specs {
            let ctx = BuildContext {
                dataset,
                input_schema: schema.clone(),
                secrets,
                resources,
            };
            let operator = spec.config.build(&ctx)?;
            schema = operator.output_schema(&schema)?;
            steps.push(Step {
                kind: spec.config.kind(),
                name: spec.name().to_owned(),
                operator,
            });
        }
        // What a sampler dropped is known only from the rate on the rows it kept: a chain
        // whose output loses that column would drop records without a trace.
        if let Some(position) = steps.iter().position(|s| s.kind == "sample")
            && schema
                .column_with_name(crate::sample::RATE_COLUMN)
                .is_none()
        {
            return Err(OperatorError::Config(crate::ConfigError::new(
                format!("operators[{position}]"),
                format!(
                    "the chain's output has no {} column, so the records this sampler drops \
                     would not be accounted for; an operator after it removes the column",
                    crate::sample::RATE_COLUMN
                ),
            )));
        }
        Ok(Chain {
            steps,
            input_schema,
            output_schema: schema,
        })
    }

    /// A chain that passes batches through unchanged.
    pub fn empty(schema: SchemaRef) -> Chain {
        Chain {
            steps: Vec::new(),
            input_schema: schema.clone(),
            output_schema: schema,
        }
    }

    pub fn input_schema(&self) -> &SchemaRef {
        &self.input_schema
    }

    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The operators' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.name.as_str())
    }

    /// Runs `batch` through every operator in order.
    pub fn process(&mut self, mut batch: RecordBatch) -> Result<RecordBatch, ChainError> {
        for step in &mut self.steps {
            if batch.num_rows() == 0 {
                break;
            }
            batch = step.operator.process(batch).map_err(|error| ChainError {
                stage: step.name.clone(),
                error,
            })?;
        }
        if batch.num_rows() == 0 && batch.schema() != self.output_schema {
            return Ok(RecordBatch::new_empty(self.output_schema.clone()));
        }
        Ok(batch)
    }

    /// Snapshots every stateful operator, under its type and name.
    pub fn snapshot(&self) -> ChainState {
        ChainState {
            operators: self
                .steps
                .iter()
                .enumerate()
                .filter_map(|(position, step)| {
                    step.operator.snapshot().map(|bytes| SavedState {
                        position,
                        kind: step.kind.to_owned(),
                        name: Some(step.name.clone()),
                        bytes: bytes.to_vec(),
                    })
                })
                .collect(),
        }
    }

    /// Restores what `state` holds for each operator of this freshly built chain, matched
    /// by identity (see the module doc), and reports what happened to each. Never fails:
    /// an operator whose state is missing or refused starts fresh, and states that match
    /// no operator are dropped, each said in the report for the caller to log.
    pub fn restore(&mut self, state: &ChainState) -> RestoreReport {
        // Only an operator that keeps state in its current settings can take a saved one
        // (a sampler switched from `budget` to a plain `rate` cannot).
        let stateful: Vec<bool> = self
            .steps
            .iter()
            .map(|s| s.operator.snapshot().is_some())
            .collect();
        let mut taken_by: Vec<Option<usize>> = vec![None; self.steps.len()];
        let mut dropped = Vec::new();
        for (index, saved) in state.operators.iter().enumerate() {
            let free = |i: usize, taken: &[Option<usize>]| stateful[i] && taken[i].is_none();
            let found = match &saved.name {
                Some(name) => (0..self.steps.len())
                    .find(|&i| self.steps[i].kind == saved.kind && self.steps[i].name == *name),
                None => {
                    let same_place = self
                        .steps
                        .get(saved.position)
                        .filter(|s| s.kind == saved.kind)
                        .map(|_| saved.position)
                        .filter(|&i| free(i, &taken_by));
                    same_place.or_else(|| {
                        (0..self.steps.len()).find(|&i| {
                            self.steps[i].kind == saved.kind
                                && self.steps[i].name == saved.kind
                                && free(i, &taken_by)
                        })
                    })
                }
            };
            match found {
                Some(i) if free(i, &taken_by) => taken_by[i] = Some(index),
                _ => dropped.push(saved.clone()),
            }
        }
        let mut operators = Vec::with_capacity(self.steps.len());
        for (position, step) in self.steps.iter_mut().enumerate() {
            let outcome = match taken_by[position] {
                Some(index) => {
                    let saved = &state.operators[index];
                    match step.operator.restore(Bytes::copy_from_slice(&saved.bytes)) {
                        Ok(()) if saved.name.is_some() => RestoreOutcome::Restored,
                        Ok(()) => RestoreOutcome::RestoredLegacy {
                            saved_position: saved.position,
                        },
                        Err(error) => RestoreOutcome::Refused {
                            reason: error.to_string(),
                        },
                    }
                }
                None if stateful[position] => RestoreOutcome::NoState,
                None => RestoreOutcome::Stateless,
            };
            operators.push(OperatorRestore {
                position,
                kind: step.kind.to_owned(),
                name: step.name.clone(),
                outcome,
            });
        }
        RestoreReport { operators, dropped }
    }

    /// Footer metadata from every operator, keys prefixed `weir.operator.<i>.`.
    pub fn lineage(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            out.push((
                format!("weir.operator.{i}.name"),
                step.operator.name().to_owned(),
            ));
            if step.name != step.kind {
                out.push((format!("weir.operator.{i}.id"), step.name.clone()));
            }
            for (k, v) in step.operator.lineage() {
                out.push((format!("weir.operator.{i}.{k}"), v));
            }
        }
        out
    }

    /// Counters of every operator.
    pub fn metrics(&self) -> Vec<Metric> {
        self.steps
            .iter()
            .flat_map(|s| s.operator.metrics())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, StringArray, TimestampNanosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::config::StaticSecrets;
    use crate::enrich::Resources;

    const BUDGET: &str = r#"
type = "sample"
key = "RayID"
time_field = "EdgeStartTimestamp"
budget = { group_by = "ZoneName", per_second = 3, excess_per_second = 1 }
"#;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("RayID", DataType::Utf8, true),
            Field::new("ZoneName", DataType::Utf8, true),
            Field::new(
                "EdgeStartTimestamp",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
        ]))
    }

    /// `n` rows in 4 zones, 40 per second of event time, starting at row `from`.
    fn batch(from: usize, n: usize) -> RecordBatch {
        let rows = from..from + n;
        let ids: StringArray = rows.clone().map(|i| Some(format!("ray{i:06}"))).collect();
        let zones: StringArray = rows
            .clone()
            .map(|i| Some(format!("zone{}.example", i % 4)))
            .collect();
        let times = TimestampNanosecondArray::from(
            rows.map(|i| 1_795_323_600_000_000_000 + (i as i64 / 40) * 1_000_000_000)
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(zones), Arc::new(times)];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    fn spec(text: &str, name: Option<&str>) -> OperatorSpec {
        let mut spec: OperatorSpec = toml::from_str(text).unwrap();
        spec.name = name.map(str::to_owned);
        spec
    }

    fn redact() -> OperatorSpec {
        spec("type = \"redact\"", None)
    }

    fn chain(specs: &[OperatorSpec]) -> Chain {
        Chain::build(
            specs,
            "test",
            schema(),
            &StaticSecrets::default(),
            &Resources::default(),
        )
        .unwrap()
    }

    fn kept(batch: &RecordBatch) -> Vec<String> {
        batch
            .column_by_name("RayID")
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_owned())
            .collect()
    }

    fn outcomes(report: &RestoreReport) -> Vec<(&str, &RestoreOutcome)> {
        report
            .operators
            .iter()
            .map(|o| (o.name.as_str(), &o.outcome))
            .collect()
    }

    #[test]
    fn spec_takes_an_optional_name_and_still_refuses_unknown_keys() {
        let named: OperatorSpec = toml::from_str("type = \"redact\"\nname = \"scrub\"").unwrap();
        assert_eq!(named.name(), "scrub");
        assert_eq!(named.config.kind(), "redact");
        assert_eq!(redact().name(), "redact");
        let err = toml::from_str::<OperatorSpec>("type = \"redact\"\nnmae = \"scrub\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nmae"), "{err}");
    }

    #[test]
    fn a_bad_value_inside_an_operator_names_its_key() {
        let error = |text: &str| {
            toml::from_str::<OperatorSpec>(text)
                .unwrap_err()
                .to_string()
        };
        for (text, named) in [
            (
                "type = \"sample\"\nkey = \"RayID\"\nrate = \"ten percent\"",
                "rate: invalid type: string \"ten percent\", expected f64",
            ),
            (
                "type = \"sample\"\nkey = \"RayID\"\nbudget = { group_by = \"ZoneName\", per_second = \"100\" }",
                "budget.per_second: invalid type: string \"100\"",
            ),
            (
                "type = \"redact\"\nfields.ClientIP = { action = \"truncate_ip\", ipv4_prefix = -1 }",
                "fields.ClientIP: invalid value: integer `-1`",
            ),
            (
                "type = \"enrich\"\ngeoip = { field = \"ClientIP\" }",
                "geoip: missing field `database`",
            ),
            (
                "type = \"redcat\"",
                "type: unknown operator type \"redcat\"",
            ),
            ("name = \"scrub\"", "missing field `type`"),
            ("type = \"redact\"\nname = 7", "name: expected a string"),
        ] {
            let err = error(text);
            assert!(err.contains(named), "{text}: {err}");
        }
        // Written back as TOML and read again, a spec is unchanged, whatever its type.
        for text in [
            BUDGET,
            "type = \"redact\"\nfields.ClientIP = { action = \"truncate_ip\", ipv4_prefix = 16 }",
            "type = \"enrich\"\nuser_agent = { field = \"UA\", cache_size = 64 }",
        ] {
            let spec = spec(text, Some("named"));
            let written = toml::to_string(&spec).unwrap();
            assert_eq!(
                toml::from_str::<OperatorSpec>(&written).unwrap(),
                spec,
                "{written}"
            );
        }
    }

    /// Non-finite floats are read as written: a buffer of JSON values would turn them into
    /// null, which an optional key takes for "absent".
    #[test]
    fn non_finite_floats_in_an_operator_are_kept() {
        let sample = |text: &str| match toml::from_str::<OperatorSpec>(text).unwrap().config {
            crate::config::OperatorConfig::Sample(config) => config,
            other => panic!("{other:?}"),
        };
        let rule = sample(
            "type = \"sample\"\nkey = \"RayID\"\nrate = 0.5\n\
             rules = [{ field = \"X\", gte = 10.0, lt = inf, rate = 1.0 }]",
        );
        assert_eq!(
            rule.rules[0].lt,
            Some(crate::sample::Scalar::Float(f64::INFINITY))
        );
        let nan = sample("type = \"sample\"\nkey = \"RayID\"\nrate = nan");
        assert!(nan.rate.is_some_and(f64::is_nan), "{nan:?}");
    }

    #[test]
    fn two_unnamed_operators_of_one_type_are_refused() {
        let err = crate::config::check_names(&[spec(BUDGET, None), redact(), spec(BUDGET, None)])
            .unwrap_err();
        assert_eq!(err.0, 2);
        assert_eq!(err.1.key, "name");
        assert!(
            err.1.reason.contains("operators 0 and 2"),
            "{}",
            err.1.reason
        );
        let err = crate::config::check_names(&[
            spec(BUDGET, Some("a")),
            redact(),
            spec(BUDGET, Some("a")),
        ])
        .unwrap_err();
        assert!(
            err.1.reason.contains("both named \"a\""),
            "{}",
            err.1.reason
        );
        let err = crate::config::check_names(&[spec(BUDGET, Some("a b"))]).unwrap_err();
        assert!(err.1.reason.contains("[A-Za-z0-9_-]"), "{}", err.1.reason);
        crate::config::check_names(&[spec(BUDGET, None), spec(BUDGET, Some("second"))]).unwrap();
        assert!(
            Chain::build(
                &[spec(BUDGET, None), spec(BUDGET, None)],
                "test",
                schema(),
                &StaticSecrets::default(),
                &Resources::default()
            )
            .is_err()
        );
    }

    /// A redact allow-list after a sampler (`unlisted_fields = "drop"`, failing closed)
    /// keeps the sampler's rate column, the only record of what it dropped, and a redact
    /// rule that would remove it is refused naming the key.
    #[test]
    fn the_sample_rate_survives_a_redact_allow_list() {
        let sample = spec("type = \"sample\"\nkey = \"RayID\"\nrate = 0.5", None);
        let allow_list = spec(
            "type = \"redact\"\nunlisted_fields = \"drop\"\nfields.RayID = { action = \"keep\" }",
            None,
        );
        let mut chain = chain(&[sample.clone(), allow_list]);
        let names: Vec<&str> = chain
            .output_schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["RayID", crate::sample::RATE_COLUMN]);
        let out = chain.process(batch(0, 1000)).unwrap();
        assert!(out.num_rows() > 0 && out.num_rows() < 1000);
        let rates = out
            .column_by_name(crate::sample::RATE_COLUMN)
            .unwrap()
            .as_primitive::<arrow_array::types::Float64Type>();
        assert_eq!(arrow_array::Array::null_count(rates), 0);
        assert!(rates.values().iter().all(|r| *r == 0.5));

        for action in ["drop", "null"] {
            let removes = spec(
                &format!("type = \"redact\"\nfields._sample_rate = {{ action = \"{action}\" }}"),
                None,
            );
            let err = Chain::build(
                &[sample.clone(), removes],
                "test",
                schema(),
                &StaticSecrets::default(),
                &Resources::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("fields._sample_rate.action"), "{err}");
            assert!(err.contains("redact always keeps it"), "{err}");
        }
    }

    /// Inserting an operator ahead of a stateful sampler (the crash loop of issue 14):
    /// the sampler's state is found by its identity, and it decides exactly as an
    /// uninterrupted sampler would.
    #[test]
    fn inserting_an_operator_ahead_keeps_the_samplers_state() {
        let mut before = chain(&[spec(BUDGET, None)]);
        before.process(batch(0, 400)).unwrap();
        let state = before.snapshot();
        assert_eq!(state.operators.len(), 1);
        assert_eq!(state.operators[0].name.as_deref(), Some("sample"));

        let mut after = chain(&[redact(), spec(BUDGET, None)]);
        let report = after.restore(&state);
        assert_eq!(
            outcomes(&report),
            [
                ("redact", &RestoreOutcome::Stateless),
                ("sample", &RestoreOutcome::Restored)
            ]
        );
        assert!(report.dropped.is_empty());
        let uninterrupted = kept(&before.process(batch(400, 400)).unwrap());
        let resumed = kept(&after.process(batch(400, 400)).unwrap());
        assert!(uninterrupted.len() < 400, "the budget drops rows");
        assert_eq!(resumed, uninterrupted);

        // Without the state, the same rows get other decisions: the restore mattered.
        let mut fresh = chain(&[redact(), spec(BUDGET, None)]);
        assert_ne!(
            kept(&fresh.process(batch(400, 400)).unwrap()),
            uninterrupted
        );
    }

    #[test]
    fn reordered_named_operators_keep_their_own_state_and_removed_ones_are_dropped() {
        let other = BUDGET.replace("per_second = 3", "per_second = 7");
        let mut before = chain(&[spec(BUDGET, Some("tight")), spec(&other, Some("loose"))]);
        before.process(batch(0, 400)).unwrap();
        let state = before.snapshot();

        let mut reordered = chain(&[spec(&other, Some("loose")), spec(BUDGET, Some("tight"))]);
        let report = reordered.restore(&state);
        assert_eq!(
            outcomes(&report),
            [
                ("loose", &RestoreOutcome::Restored),
                ("tight", &RestoreOutcome::Restored)
            ]
        );
        let by_name = |s: &ChainState, name: &str| {
            s.operators
                .iter()
                .find(|o| o.name.as_deref() == Some(name))
                .unwrap()
                .bytes
                .clone()
        };
        let restored = reordered.snapshot();
        for name in ["tight", "loose"] {
            assert_eq!(by_name(&restored, name), by_name(&state, name), "{name}");
        }

        let mut fewer = chain(&[spec(BUDGET, Some("tight")), spec(BUDGET, Some("new"))]);
        let report = fewer.restore(&state);
        assert_eq!(
            outcomes(&report),
            [
                ("tight", &RestoreOutcome::Restored),
                ("new", &RestoreOutcome::NoState)
            ]
        );
        assert_eq!(report.dropped.len(), 1);
        assert_eq!(report.dropped[0].name.as_deref(), Some("loose"));
    }

    #[test]
    fn a_changed_setting_that_invalidates_state_starts_the_operator_fresh() {
        let mut before = chain(&[spec(BUDGET, None)]);
        before.process(batch(0, 400)).unwrap();
        let state = before.snapshot();
        let regrouped = BUDGET.replace("group_by = \"ZoneName\"", "group_by = \"RayID\"");
        let mut after = chain(&[spec(&regrouped, None)]);
        let report = after.restore(&state);
        match &report.operators[0].outcome {
            RestoreOutcome::Refused { reason } => {
                assert!(reason.contains("group_by"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // It runs as a fresh operator would.
        let mut fresh = chain(&[spec(&regrouped, None)]);
        assert_eq!(
            kept(&after.process(batch(400, 400)).unwrap()),
            kept(&fresh.process(batch(400, 400)).unwrap())
        );
        // Switched to a plain rate, the sampler keeps no state: the saved one is dropped.
        let plain = "type = \"sample\"\nkey = \"RayID\"\nrate = 0.5";
        let mut stateless = chain(&[spec(plain, None)]);
        let report = stateless.restore(&state);
        assert_eq!(outcomes(&report), [("sample", &RestoreOutcome::Stateless)]);
        assert_eq!(report.dropped.len(), 1);
    }

    /// Entries written before operators had names carry `(position, type)` only.
    #[test]
    fn states_saved_without_names_are_matched_by_position_then_by_type() {
        let mut before = chain(&[spec(BUDGET, None)]);
        before.process(batch(0, 400)).unwrap();
        let mut legacy = before.snapshot();
        legacy.operators[0].name = None;

        let mut same = chain(&[spec(BUDGET, None)]);
        let report = same.restore(&legacy);
        assert_eq!(
            report.operators[0].outcome,
            RestoreOutcome::RestoredLegacy { saved_position: 0 }
        );

        let mut moved = chain(&[redact(), spec(BUDGET, None)]);
        let report = moved.restore(&legacy);
        assert_eq!(
            report.operators[1].outcome,
            RestoreOutcome::RestoredLegacy { saved_position: 0 }
        );
        assert_eq!(
            kept(&moved.process(batch(400, 400)).unwrap()),
            kept(&before.process(batch(400, 400)).unwrap())
        );

        // Renamed, and no longer at its old position: nothing to match it by.
        let mut renamed = chain(&[redact(), spec(BUDGET, Some("zones"))]);
        let report = renamed.restore(&legacy);
        assert_eq!(report.operators[1].outcome, RestoreOutcome::NoState);
        assert_eq!(report.dropped.len(), 1);
    }
}
