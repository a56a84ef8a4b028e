//! A vertex running a built-in temporal operator: CTIs go through the
//! operator, which may hold them back (its output starts earlier).

use super::*;

/// An operator's failure, with the vertex, input and seq it happened at.
pub(super) fn temporal_error(vertex: &str, input: usize, seq: u64, e: String) -> VertexError {
    VertexError::Input {
        vertex: vertex.to_string(),
        message: format!("input {input} seq {seq}: {e}"),
    }
}

impl Vertex {
    /// CTI `t` through the operator: the rows it makes final, then the CTI
    /// it passes on, if that moves the output's CTI forward.
    pub(super) fn temporal_cti(
        &mut self,
        seq: u64,
        t: i64,
        fx: &mut Effects,
    ) -> Result<(), VertexError> {
        let Operator::Temporal(op) = &mut self.operator else {
            return Ok(());
        };
        let (out, pass) = op
            .on_cti(t)
            .map_err(|e| temporal_error(&self.name, 0, seq, format!("at CTI {t}: {e}")))?;
        if let Some(out) = out {
            self.at.rows.1 += out.num_rows() as u64;
            self.emit_batch(fx, out);
        }
        if self.at.cti.is_none_or(|c| pass > c) {
            self.write_cti(pass, fx);
        }
        Ok(())
    }
}

impl Vertex {
    /// What kind of vertex it is: `source`, `stage` (a UDF), `union` or
    /// `operator` (a built-in temporal operator).
    pub fn role(&self) -> &'static str {
        match &self.operator {
            Operator::Source(_) => "source",
            Operator::Udf(_) => "stage",
            Operator::Union => "union",
            Operator::Temporal(_) => "operator",
        }
    }
}
