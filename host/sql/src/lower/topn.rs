//! `ORDER BY ... LIMIT n`: a per-window top-N. Of the rows sharing one
//! lifetime (a window's rows, when they come from a windowed aggregate, or
//! rows put in their windows by the query's window clause), the first `n`
//! by the order, ties broken by the other columns.

use std::sync::Arc;

use datafusion_expr::logical_plan::{FetchType, Limit, SkipType, Sort};
use datafusion_expr::{Expr, LogicalPlan};
use weir_core::temporal::{Lifetime, OrderKey, TemporalOp, TopN};

use super::build::{Build, MakeOp};
use super::{Flow, Lowering};
use crate::pipeline::Step;

impl Lowering<'_> {
    /// `LIMIT n` over an `ORDER BY`.
    pub(super) fn limit(&mut self, l: &Limit) -> Result<Flow, String> {
        if !matches!(l.get_skip_type(), Ok(SkipType::Literal(0))) {
            return Err(
                "OFFSET is not supported: a top-N keeps the first n rows of each window".into(),
            );
        }
        let n = match l.get_fetch_type() {
            Ok(FetchType::Literal(Some(n))) => n,
            Ok(FetchType::Literal(None)) => return self.flow(&l.input),
            _ => return Err("LIMIT takes a whole number".into()),
        };
        match l.input.as_ref() {
            LogicalPlan::Sort(s) => self.top_n(s, s.fetch.map_or(n, |f| f.min(n))),
            _ => Err(
                "LIMIT without ORDER BY keeps arbitrary rows; a top-N per window is ORDER BY ... LIMIT n"
                    .into(),
            ),
        }
    }

    /// An `ORDER BY`: only with a `LIMIT` (a sink writes in its canonical
    /// order anyway).
    pub(super) fn sort(&mut self, s: &Sort) -> Result<Flow, String> {
        match s.fetch {
            Some(n) => self.top_n(s, n),
            None => Err(
                "ORDER BY without LIMIT: outputs are written in a canonical order (start, end, line) already; a top-N per window is ORDER BY ... LIMIT n"
                    .into(),
            ),
        }
    }

    /// The first `n` rows of each lifetime of `s`'s input by its order.
    fn top_n(&mut self, s: &Sort, n: usize) -> Result<Flow, String> {
        let mut flow = self.flow(&s.input)?;
        // A window clause no aggregate read: each row joins the windows
        // its lifetime overlaps, so the top-N is per window.
        if let (Some(w), false) = (self.window, self.window_used) {
            if w.session.is_some() {
                return Err(
                    "a session window groups an aggregate's events; a top-N of raw events takes TUMBLING or HOPPING windows"
                        .into(),
                );
            }
            flow.steps.push(Step::Lifetime(Lifetime::Window(w.hopping)));
            self.window_used = true;
        }
        let (stream, schema) = self.materialize(flow)?;
        let input = s.input.schema();
        let mut order = Vec::new();
        for key in &s.expr {
            let Expr::Column(c) = &key.expr else {
                return Err(format!(
                    "ORDER BY `{}`: a top-N orders by columns of its input; select the expression AS a column first",
                    key.expr
                ));
            };
            let column = input.index_of_column(c).map_err(|e| e.strip_backtrace())? + 2;
            order.push(OrderKey {
                column,
                descending: !key.asc,
                nulls_first: key.nulls_first,
            });
        }
        let mut by = Vec::new();
        for (name, at) in std::mem::take(&mut self.limit_by) {
            // Errors point at the column.
            self.at = at;
            match input.fields().iter().position(|f| f.name() == &name) {
                Some(i) => by.push(i + 2),
                None => {
                    return Err(format!(
                        "LIMIT {n} BY `{name}`: not a column of the rows ranked (columns: {})",
                        input
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        // Checked here, so a plan that compiles makes its operator.
        let probe = TopN::new(schema.clone(), order.clone(), by.clone(), n)?;
        let describe = probe.describe();
        let of = schema.clone();
        let make: MakeOp = Arc::new(move || {
            TopN::new(of.clone(), order.clone(), by.clone(), n)
                .map(|t| Box::new(t) as Box<dyn TemporalOp>)
        });
        let name = self.fresh();
        self.builds.push(
            Build::new(
                name.clone(),
                vec![stream],
                vec![schema.clone()],
                Vec::new(),
                schema.clone(),
            )
            .with_op((describe, make)),
        );
        self.streams.push((name.clone(), schema.clone()));
        Ok(Flow {
            stream: name,
            arrow: schema,
            steps: Vec::new(),
        })
    }
}
