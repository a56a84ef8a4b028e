//! Calls of scalar components in expressions. DataFusion does not run
//! Wasm: each call becomes a stage of its own that runs the component over
//! its arguments (a UDF stage, checkpointed, patchable and deterministic
//! like any other), placed before the expressions that read its result.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::Field as ArrowField;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, DFSchema, TableReference};
use datafusion_expr::{Expr, ExprSchemable};
use weir_core::plan::{ErrorPolicy, StageKind, UdfSpec};

use super::{Flow, Lowering};
use crate::component::WasmScalar;

/// Whether `e` calls a scalar component.
fn is_call(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if WasmScalar::of(&f.func).is_some())
}

/// Whether `e` calls a scalar component anywhere.
pub(super) fn has_call(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        found = is_call(e);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// A call in `exprs` whose arguments call no component (innermost first).
fn innermost(exprs: &[Expr]) -> Option<Expr> {
    let mut call = None;
    for e in exprs {
        let _ = e.apply(|e| {
            if let Expr::ScalarFunction(f) = e
                && is_call(e)
                && !f.args.iter().any(has_call)
            {
                call = Some(e.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if call.is_some() {
            break;
        }
    }
    call
}

impl Lowering<'_> {
    /// `exprs` (over `input`, the schema of `flow`'s rows) with every call
    /// of a scalar component replaced by the column a stage added to
    /// `flow` for it, and the schema they are now over: `input`'s columns,
    /// then each call's arguments and result.
    pub(super) fn hoist(
        &mut self,
        flow: &mut Flow,
        exprs: &[Expr],
        input: &DFSchema,
    ) -> Result<(Vec<Expr>, DFSchema), String> {
        let mut exprs = exprs.to_vec();
        let mut schema = input.clone();
        let df = |e: datafusion_common::DataFusionError| e.strip_backtrace();
        while let Some(call) = innermost(&exprs) {
            let Expr::ScalarFunction(f) = &call else {
                unreachable!("innermost gives calls");
            };
            let index = WasmScalar::of(&f.func).map_or(0, |w| w.index);
            let declared = self.declared[index].clone();
            let n = self.calls;
            self.calls += 1;
            // Every column so far, then the call's arguments.
            let mut fields: Vec<(Option<TableReference>, Arc<ArrowField>)> = schema
                .iter()
                .map(|(q, f)| (q.cloned(), f.clone()))
                .collect();
            let mut map: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
            let mut args = Vec::new();
            for (i, a) in f.args.iter().enumerate() {
                let name = format!("__arg{n}_{i}");
                let (_, field) = a.to_field(&schema).map_err(df)?;
                map.push(a.clone().alias(&name));
                fields.push((
                    None,
                    Arc::new(ArrowField::new(
                        &name,
                        field.data_type().clone(),
                        field.is_nullable(),
                    )),
                ));
                args.push(name);
            }
            let with_args =
                DFSchema::new_with_metadata(fields.clone(), HashMap::new()).map_err(df)?;
            self.map(flow, &map, &schema, &with_args)?;
            let taken = Flow {
                stream: flow.stream.clone(),
                arrow: flow.arrow.clone(),
                steps: std::mem::take(&mut flow.steps),
            };
            let (stream, events) = self.materialize(taken)?;
            // The component's stage adds the result.
            let result = format!("__call{n}");
            let spec = UdfSpec {
                kind: StageKind::Scalar,
                component: declared.path.clone(),
                params: declared.params.clone(),
                key: None,
                output: Some(result.clone()),
                args,
                on_trap: ErrorPolicy::Fail,
                limits: Default::default(),
            };
            let name = self.fresh();
            let output = self
                .components
                .stage_output(&name, &spec, events.clone())
                .map_err(|m| format!("`{}(...)`: {m}", declared.name))?;
            let added = output
                .field_with_name(&result)
                .map_err(|e| e.to_string())?
                .clone();
            self.component_stage(
                name.clone(),
                stream,
                events,
                spec,
                output.clone(),
                (1, Vec::new()),
            );
            *flow = Flow {
                stream: name,
                arrow: output,
                steps: Vec::new(),
            };
            fields.push((None, Arc::new(added)));
            schema = DFSchema::new_with_metadata(fields, HashMap::new()).map_err(df)?;
            let column = Expr::Column(Column::from_name(result));
            exprs = exprs
                .into_iter()
                .map(|e| {
                    e.transform_up(|e| {
                        Ok(if e == call {
                            Transformed::yes(column.clone())
                        } else {
                            Transformed::no(e)
                        })
                    })
                    .map(|t| t.data)
                    .map_err(df)
                })
                .collect::<Result<_, _>>()?;
        }
        Ok((exprs, schema))
    }
}
