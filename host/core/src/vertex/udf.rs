//! What a UDF vertex tells its runtime: logs, usage, module, and a fork
//! of its state for `weir udf replay`.

use super::*;

impl Vertex {
    /// Keeps what a UDF vertex's UDF logs and prints, for [`Vertex::take_logs`].
    pub fn capture_logs(&mut self) {
        if let Operator::Udf(stage) = &mut self.operator {
            stage.capture_logs();
        }
    }

    /// The lines a UDF vertex kept since the last call.
    pub fn take_logs(&mut self) -> Vec<crate::stage::UdfLog> {
        match &mut self.operator {
            Operator::Udf(stage) => stage.take_logs(),
            _ => Vec::new(),
        }
    }

    /// A UDF vertex's failed calls and its instance's usage
    /// ([`UdfStage::usage`]).
    pub fn udf_usage(&self) -> Option<(u64, crate::udf::Usage)> {
        match &self.operator {
            Operator::Udf(stage) => Some(stage.usage()),
            _ => None,
        }
    }

    /// The module a UDF vertex runs.
    pub fn udf_module(&self) -> Option<&crate::udf::ModuleId> {
        match &self.operator {
            Operator::Udf(stage) => Some(stage.module()),
            _ => None,
        }
    }

    /// A UDF vertex's snapshot now with a copy of its whole keyed state:
    /// what another vertex resumes from to carry on exactly where this one
    /// is (a fork, as `weir udf replay` makes).
    pub fn fork_point(&mut self) -> Option<(VertexSnapshot, KeyedState)> {
        let snapshot = self.snapshot();
        match &mut self.operator {
            Operator::Udf(stage) => Some((snapshot, stage.keyed_state())),
            _ => None,
        }
    }
}
