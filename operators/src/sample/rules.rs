//! Rules and the rate table, compiled against the input schema: each row is assigned the
//! index of the [`Choice`] that sets its rate, or [`UNASSIGNED`] for the default.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar as ArrowScalar};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Schema};

use super::config::{RateTableConfig, RuleConfig, Scalar};
use super::hash::{rate_of_threshold, threshold_for_rate};

pub const UNASSIGNED: u32 = u32::MAX;

/// A rate as the sampler uses it: the threshold and the exact probability it keeps with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub threshold: u64,
    pub rate: f64,
}

impl Choice {
    pub fn new(rate: f64) -> Choice {
        let threshold = threshold_for_rate(rate);
        Choice {
            threshold,
            rate: rate_of_threshold(threshold),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug)]
enum Condition {
    Compare(Op, ArrayRef),
    In(Vec<ArrayRef>),
    NotIn(Vec<ArrayRef>),
    IsNull(bool),
}

#[derive(Debug)]
pub struct Rule {
    field: String,
    conditions: Vec<Condition>,
}

fn literal(value: &Scalar, data_type: &DataType) -> Result<ArrayRef, String> {
    value.to_array(data_type)
}

impl Rule {
    pub fn compile(config: &RuleConfig, schema: &Schema) -> Result<Rule, String> {
        let field = schema
            .field_with_name(&config.field)
            .map_err(|_| format!("unknown field {:?}", config.field))?;
        let data_type = field.data_type();
        let mut conditions = Vec::new();
        for (op, value) in [
            (Op::Eq, &config.eq),
            (Op::Ne, &config.ne),
            (Op::Gt, &config.gt),
            (Op::Gte, &config.gte),
            (Op::Lt, &config.lt),
            (Op::Lte, &config.lte),
        ] {
            if let Some(value) = value {
                conditions.push(Condition::Compare(op, literal(value, data_type)?));
            }
        }
        if let Some(list) = &config.in_list {
            let values = list
                .iter()
                .map(|v| literal(v, data_type))
                .collect::<Result<_, _>>()?;
            conditions.push(Condition::In(values));
        }
        if let Some(list) = &config.not_in {
            let values = list
                .iter()
                .map(|v| literal(v, data_type))
                .collect::<Result<_, _>>()?;
            conditions.push(Condition::NotIn(values));
        }
        if let Some(is_null) = config.is_null {
            conditions.push(Condition::IsNull(is_null));
        }
        Ok(Rule {
            field: config.field.clone(),
            conditions,
        })
    }

    /// Rows where every condition holds (a comparison with null never holds).
    pub fn matches(&self, batch: &RecordBatch) -> Result<BooleanBuffer, String> {
        let column = batch
            .column_by_name(&self.field)
            .ok_or_else(|| format!("field {:?} is missing from the batch", self.field))?;
        let rows = batch.num_rows();
        let valid = match column.logical_nulls() {
            Some(nulls) => nulls.inner().clone(),
            None => BooleanBuffer::new_set(rows),
        };
        let mut result = BooleanBuffer::new_set(rows);
        for condition in &self.conditions {
            let holds = match condition {
                Condition::Compare(op, value) => &compare(*op, column, value)? & &valid,
                Condition::In(values) => &any_equal(column, values, rows)? & &valid,
                Condition::NotIn(values) => &!&any_equal(column, values, rows)? & &valid,
                Condition::IsNull(true) => !&valid,
                Condition::IsNull(false) => valid.clone(),
            };
            result &= &holds;
        }
        Ok(result)
    }
}

fn compare(op: Op, column: &ArrayRef, value: &ArrayRef) -> Result<BooleanBuffer, String> {
    use arrow_ord::cmp;
    let scalar = ArrowScalar::new(value.clone());
    let result: BooleanArray = match op {
        Op::Eq => cmp::eq(column, &scalar),
        Op::Ne => cmp::neq(column, &scalar),
        Op::Gt => cmp::gt(column, &scalar),
        Op::Gte => cmp::gt_eq(column, &scalar),
        Op::Lt => cmp::lt(column, &scalar),
        Op::Lte => cmp::lt_eq(column, &scalar),
    }
    .map_err(|error| error.to_string())?;
    Ok(result.values().clone())
}

fn any_equal(column: &ArrayRef, values: &[ArrayRef], rows: usize) -> Result<BooleanBuffer, String> {
    let mut result = BooleanBuffer::new_unset(rows);
    for value in values {
        result |= &compare(Op::Eq, column, value)?;
    }
    Ok(result)
}

/// Per-value rates keyed by one column's text.
#[derive(Debug)]
pub struct RateTable {
    field: String,
    /// Value → index into the operator's choices.
    rates: HashMap<String, u32>,
}

impl RateTable {
    /// `first_choice` is the index the table's first entry gets in the choices list;
    /// returns the table and its choices in that order.
    pub fn compile(config: &RateTableConfig, first_choice: u32) -> (RateTable, Vec<Choice>) {
        let mut rates = HashMap::with_capacity(config.rates.len());
        let mut choices = Vec::with_capacity(config.rates.len());
        for (offset, (value, rate)) in config.rates.iter().enumerate() {
            rates.insert(value.clone(), first_choice + offset as u32);
            choices.push(Choice::new(*rate));
        }
        let table = RateTable {
            field: config.field.clone(),
            rates,
        };
        (table, choices)
    }

    /// Fills unassigned rows whose value is in the table.
    pub fn assign(&self, batch: &RecordBatch, assigned: &mut [u32]) -> Result<u64, String> {
        let column = batch
            .column_by_name(&self.field)
            .ok_or_else(|| format!("field {:?} is missing from the batch", self.field))?;
        let text;
        let strings = match column.data_type() {
            DataType::Utf8 => column.as_string::<i32>(),
            _ => {
                text = arrow_cast::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
                text.as_string::<i32>()
            }
        };
        let mut hits = 0;
        for (index, slot) in assigned.iter_mut().enumerate() {
            if *slot == UNASSIGNED
                && strings.is_valid(index)
                && let Some(choice) = self.rates.get(strings.value(index))
            {
                *slot = *choice;
                hits += 1;
            }
        }
        Ok(hits)
    }
}
