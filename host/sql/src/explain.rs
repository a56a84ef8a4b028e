//! `weir explain`: a script's logical plans and the physical plan it runs.

use std::fmt::Write;
use std::path::Path;

use weir_core::plan::{Operator, Plan, Recovery, SinkTarget, StageKind};
use weir_core::udf::ModuleVersion;

use crate::bind::Bound;
use crate::component::Components;
use crate::error::ScriptError;
use crate::script::Window;

/// The logical plan of every query (as DataFusion bound, type-checked and
/// optimised it) and the physical plan: sources, stages with their inputs,
/// parallelism, partitioning, merges and recovery, and sinks.
/// `components` tells what the components it declares are.
pub fn explain(
    path: &Path,
    text: &str,
    components: &dyn Components,
    parallelism: usize,
) -> Result<String, ScriptError> {
    let file = path.display().to_string();
    let statements = crate::script::parse(&file, text)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let bound = crate::bind::bind(&file, statements, components, &base)?;
    let mut out = String::new();
    let _ = writeln!(out, "== logical plan");
    for b in &bound {
        if let Bound::Query(select, plan) = b {
            let optimized =
                crate::lower::optimize(plan.as_ref().clone()).map_err(|m| ScriptError {
                    file: file.clone(),
                    line: select.at.line,
                    column: select.at.column,
                    message: m,
                    hint: None,
                })?;
            let window = match select.window {
                Some(Window {
                    session: Some(gap), ..
                }) => format!(" (window SESSION, gap {gap} µs)"),
                Some(w) if w.hopping.size() == w.hopping.hop() => {
                    format!(" (window TUMBLING {} µs)", w.hopping.size())
                }
                Some(w) => format!(
                    " (window HOPPING {} µs every {} µs)",
                    w.hopping.size(),
                    w.hopping.hop()
                ),
                None => String::new(),
            };
            let _ = writeln!(out, "{}{window}:", select.name);
            for line in optimized.display_indent().to_string().lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let plan = crate::lower::compile_with(
        path,
        text,
        crate::lower::Inputs::Files,
        components,
        parallelism,
    )?;
    out.push_str(&physical(&plan));
    Ok(out)
}

fn physical(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== physical plan (job `{}`)", plan.name);
    for s in &plan.sources {
        let _ = writeln!(
            out,
            "source {}: {} (event time `{}`{})",
            s.name,
            s.path.display(),
            s.event_time,
            s.end_time
                .as_ref()
                .map(|e| format!(", end time `{e}`"))
                .unwrap_or_default()
        );
    }
    for s in &plan.stages {
        let what = match &s.operator {
            Operator::Temporal(t) => format!("operator: {}", t.describe),
            Operator::Union => "union".into(),
            Operator::Udf(u) => {
                let version = std::fs::read(&u.component)
                    .map(|b| ModuleVersion::of(&b).short().to_string())
                    .unwrap_or_else(|_| "unread".into());
                let what = match (u.kind, &u.key) {
                    (StageKind::Scalar, _) => format!(
                        "scalar function({}) as `{}`",
                        u.args.join(", "),
                        u.output.as_deref().unwrap_or("")
                    ),
                    (_, Some(key)) => format!("reducer keyed by `{key}`"),
                    (_, None) => "processor".into(),
                };
                format!(
                    "Wasm component {} (module {version}), {what}",
                    u.component.display()
                )
            }
        };
        let merge = if s.inputs.len() > 1 {
            ", merged by CTI"
        } else {
            ""
        };
        let mut recovery = match s.recovery {
            Recovery::Checkpoint { every } => format!("checkpoint every {every} CTI(s)"),
            Recovery::Replay { window } => format!("replay of the last {window} CTI(s)"),
        };
        if s.replicate > 1 {
            recovery.push_str(&format!(
                ", replicated: {} instances of each rVertex on different members of a cluster",
                s.replicate
            ));
        }
        let parallel = weir_core::parallel::is_parallel(s);
        let partitioning = if parallel {
            let by: Vec<String> = s
                .partition
                .iter()
                .zip(&s.inputs)
                .map(|(keys, input)| {
                    let names: Vec<&str> = keys
                        .columns
                        .iter()
                        .map(|&k| keys.schema.field(k).name().as_str())
                        .collect();
                    format!("{input} by hash({})", names.join(", "))
                })
                .collect();
            format!("partitioned: {}", by.join("; "))
        } else {
            "no partitioning".into()
        };
        let _ = writeln!(
            out,
            "stage {} <- {}{merge}: parallelism {}, {partitioning}, recovery {recovery}\n    {what}",
            s.name,
            s.inputs.join(", "),
            if parallel { s.parallelism } else { 1 },
        );
        if parallel {
            let n = s.parallelism;
            let last = n - 1;
            let _ = writeln!(
                out,
                "    runs as: exchange {} .. {} (one rStream per partition), copies {} .. {}, merged by CTI into {}",
                weir_core::parallel::partition_name(&s.name, 0, 0),
                weir_core::parallel::partition_name(&s.name, s.inputs.len() - 1, last),
                weir_core::parallel::copy_name(&s.name, 0),
                weir_core::parallel::copy_name(&s.name, last),
                s.name
            );
        }
    }
    for s in &plan.sinks {
        let target = match &s.target {
            SinkTarget::File(p) => p.display().to_string(),
            SinkTarget::Stdout => "stdout".into(),
            SinkTarget::Discard => "nowhere".into(),
        };
        let _ = writeln!(
            out,
            "sink {} -> {target}{}{}",
            s.input,
            if s.interval { " with interval" } else { "" },
            if s.ordered {
                ", in canonical order (start, end, line) per CTI"
            } else {
                ""
            }
        );
    }
    out
}
