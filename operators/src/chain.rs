//! A dataset's operators, run in order.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{BuildContext, OperatorConfig};
use crate::error::OperatorError;
use crate::{Metric, Operator};

/// The operators of one (dataset, partition), in config order.
pub struct Chain {
    operators: Vec<Box<dyn Operator>>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.operators.iter().map(|op| op.name()).collect();
        f.debug_struct("Chain").field("operators", &names).finish()
    }
}

/// The state of every stateful operator of a chain, keyed by position, as stored in a
/// ledger entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    /// `(position in the chain, operator name, snapshot bytes)`.
    pub operators: Vec<(usize, String, Vec<u8>)>,
}

impl ChainState {
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}

/// Why a batch failed inside the chain: which operator, and the error.
#[derive(Debug)]
pub struct ChainError {
    pub stage: String,
    pub error: OperatorError,
}

impl Chain {
    /// Builds every operator of `configs`, threading the schema through them.
    pub fn build(
        configs: &[OperatorConfig],
        dataset: &str,
        input_schema: SchemaRef,
        secrets: &dyn crate::SecretSource,
        resources: &crate::enrich::Resources,
    ) -> Result<Chain, OperatorError> {
        let mut operators = Vec::with_capacity(configs.len());
        let mut schema = input_schema.clone();
        for config in configs {
            let ctx = BuildContext {
                dataset,
                input_schema: schema.clone(),
                secrets,
                resources,
            };
            let op = config.build(&ctx)?;
            schema = op.output_schema(&schema)?;
            operators.push(op);
        }
        Ok(Chain {
            operators,
            input_schema,
            output_schema: schema,
        })
    }

    /// A chain that passes batches through unchanged.
    pub fn empty(schema: SchemaRef) -> Chain {
        Chain {
            operators: Vec::new(),
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
        self.operators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }

    /// Runs `batch` through every operator in order.
    pub fn process(&mut self, mut batch: RecordBatch) -> Result<RecordBatch, ChainError> {
        for op in &mut self.operators {
            if batch.num_rows() == 0 {
                break;
            }
            batch = op.process(batch).map_err(|error| ChainError {
                stage: op.name().to_owned(),
                error,
            })?;
        }
        if batch.num_rows() == 0 && batch.schema() != self.output_schema {
            return Ok(RecordBatch::new_empty(self.output_schema.clone()));
        }
        Ok(batch)
    }

    /// Snapshots every stateful operator.
    pub fn snapshot(&self) -> ChainState {
        ChainState {
            operators: self
                .operators
                .iter()
                .enumerate()
                .filter_map(|(i, op)| op.snapshot().map(|s| (i, op.name().to_owned(), s.to_vec())))
                .collect(),
        }
    }

    /// Restores state from a snapshot taken by a chain built from the same config.
    pub fn restore(&mut self, state: &ChainState) -> Result<(), OperatorError> {
        for (position, name, bytes) in &state.operators {
            let op = self.operators.get_mut(*position).ok_or_else(|| {
                OperatorError::restore(name, format!("no operator at position {position}"))
            })?;
            if op.name() != name {
                return Err(OperatorError::restore(
                    name,
                    format!("operator at position {position} is {}", op.name()),
                ));
            }
            op.restore(Bytes::copy_from_slice(bytes))?;
        }
        Ok(())
    }

    /// Footer metadata from every operator, keys prefixed `weir.operator.<i>.`.
    pub fn lineage(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, op) in self.operators.iter().enumerate() {
            out.push((format!("weir.operator.{i}.name"), op.name().to_owned()));
            for (k, v) in op.lineage() {
                out.push((format!("weir.operator.{i}.{k}"), v));
            }
        }
        out
    }

    /// Counters of every operator.
    pub fn metrics(&self) -> Vec<Metric> {
        self.operators.iter().flat_map(|op| op.metrics()).collect()
    }
}
