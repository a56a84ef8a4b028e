//! Lowering: a bound script becomes a plan of stages over named streams.
//! Each input is a source (with a lifetime stage when it has `LIFETIME`);
//! each query's logical plan becomes stages of expressions around at most
//! one windowed aggregate or temporal join each; each output a sink.

use std::path::Path;
use std::sync::Arc;

use arrow_schema::{Field as ArrowField, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{Expr, ExprSchemable, JoinType, LogicalPlan};
use datafusion_physical_expr::{PhysicalExpr, create_physical_expr};
use sqlparser::tokenizer::Location;
use weir_core::plan::{Plan, SinkSpec, SinkTarget};
use weir_core::temporal::{
    AggKind, Aggregate, JoinKind, Lifetime, Partition, SessionAggregate, TemporalJoin, TemporalOp,
    WindowAggregate,
};

mod build;
mod component;
mod hoist;
mod input;
mod split;
mod topn;

use build::{Build, MakeOp};

use crate::bind::Bound;
use crate::component::{Components, Declared, NoComponents, WasmAggregate};
use crate::error::ScriptError;
use crate::pipeline::{Step, with_interval};
use crate::script::Window;

/// Rows on their way: the stream they come from, the steps still to run on
/// them, and their logical schema.
struct Flow {
    stream: String,
    arrow: SchemaRef,
    steps: Vec<Step>,
}

struct Lowering<'a> {
    file: &'a str,
    builds: Vec<Build>,
    /// Streams defined so far, with their schemas (interval first).
    streams: Vec<(String, SchemaRef)>,
    /// The query being lowered: its name, window and place.
    name: String,
    window: Option<Window>,
    /// An aggregate or a top-N of the query read its window.
    window_used: bool,
    /// The query's `LIMIT n BY` columns, for its top-N.
    limit_by: Vec<(String, Location)>,
    at: Location,
    /// Stages of this query so far (for fresh names).
    made: usize,
    /// Components declared so far.
    declared: Vec<Declared>,
    /// Calls of scalar components in this query so far (for column names).
    calls: usize,
    /// The rVertices this query's keyed stages run as.
    parallelism: usize,
    components: &'a dyn Components,
}

/// Where a script's inputs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// `INPUT "path"` reads the file (`weir run`).
    Files,
    /// `Name = INPUT ...` reads the node's stream `Name` (`weir job submit`),
    /// fed by `weir ingest Name FILE`.
    Streams,
}

/// Compiles script `text` (its file `path`; relative paths are from its
/// directory) to a plan whose inputs are files, for a script that uses no
/// component.
pub fn compile(path: &Path, text: &str) -> Result<Plan, ScriptError> {
    compile_with(path, text, Inputs::Files, &NoComponents, 1)
}

/// Compiles script `text` to a plan whose inputs come from `inputs`;
/// `components` tells what the components it declares are.
pub fn compile_with(
    path: &Path,
    text: &str,
    inputs: Inputs,
    components: &dyn Components,
    parallelism: usize,
) -> Result<Plan, ScriptError> {
    let file = path.display().to_string();
    let statements = crate::script::parse(&file, text)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // `SET PARALLELISM n` overrides the command line's default.
    let mut set: Option<Location> = None;
    let mut default = parallelism.max(1);
    for s in &statements {
        if let crate::script::Statement::Parallelism(n, at) = s {
            if let Some(before) = set {
                return Err(ScriptError {
                    file: file.clone(),
                    line: at.line,
                    column: at.column,
                    message: format!(
                        "the parallelism is already set at line {}; a script sets it once",
                        before.line
                    ),
                    hint: None,
                });
            }
            set = Some(*at);
            default = *n;
        }
    }
    let bound = crate::bind::bind(&file, statements, components, &base)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "script".into());
    let mut l = Lowering {
        file: &file,
        builds: Vec::new(),
        streams: Vec::new(),
        name: String::new(),
        window: None,
        window_used: false,
        limit_by: Vec::new(),
        at: Location::new(1, 1),
        made: 0,
        calls: 0,
        parallelism: default,
        declared: Vec::new(),
        components,
    };
    let (mut sources, mut sinks) = (Vec::new(), Vec::new());
    for b in bound {
        match b {
            Bound::Input(input, schema) => {
                sources.push(l.input(&input, &base, schema, inputs)?);
            }
            Bound::Query(select, plan) => {
                l.name = select.name.clone();
                l.window = select.window;
                l.window_used = false;
                l.limit_by = select.limit_by.clone();
                l.at = select.at;
                l.made = 0;
                l.calls = 0;
                l.parallelism = select.parallelism.map_or(default, |(n, _)| n);
                let first = l.builds.len();
                let plan = optimize(*plan).map_err(|m| l.fail(m))?;
                let mut flow = l.flow(&plan).map_err(|m| l.fail(m))?;
                if let Some((change, _)) = select.lifetime {
                    let change = match &select.point_at {
                        Some((column, at)) => {
                            l.at = *at;
                            Lifetime::PointAt(l.time_column(&flow.arrow, column)?)
                        }
                        None => change,
                    };
                    flow.steps.push(Step::Lifetime(change));
                }
                l.finish(flow, first);
                l.replicate(first, select.replicate);
                if let Some((n, at)) = select.parallelism
                    && n > 1
                    && l.builds[first..].iter().all(|b| b.parallelism <= 1)
                {
                    return Err(ScriptError {
                        file: file.clone(),
                        line: at.line,
                        column: at.column,
                        message: format!(
                            "WITH PARALLELISM {n}: this query has no stage to split; a windowed aggregate (but a session window without GROUP BY) or a join with equal keys runs in parallel"
                        ),
                        hint: None,
                    });
                }
                if let (Some(w), false) = (select.window, l.window_used) {
                    return Err(ScriptError {
                        file: file.clone(),
                        line: w.at.line,
                        column: w.at.column,
                        message: "the window clause is not used: no aggregate reads it".into(),
                        hint: None,
                    });
                }
            }
            Bound::Component(d) => l.declared.push(d),
            Bound::Process(p, spec, schema) => {
                l.at = p.at;
                let first = l.builds.len();
                l.process(&p, spec, &schema, default)?;
                l.replicate(first, p.replicate);
            }
            Bound::Output(o) => sinks.push(SinkSpec {
                input: l.stream_name(&o.name),
                target: match &o.path {
                    Some(path) => SinkTarget::File(base.join(path)),
                    None => SinkTarget::Discard,
                },
                interval: o.interval,
                columns: None,
                ordered: true,
            }),
        }
    }
    Ok(Plan {
        name: name.clone(),
        batch_size: 1024,
        sources,
        stages: l.builds.into_iter().map(Build::spec).collect(),
        sinks,
        dead_letter: base.join(format!("{name}.dead-letter.jsonl")),
        components: l.declared.iter().map(|d| d.path.clone()).collect(),
    })
}

impl Lowering<'_> {
    fn fail(&self, message: String) -> ScriptError {
        ScriptError {
            file: self.file.to_string(),
            line: self.at.line,
            column: self.at.column,
            message,
            hint: None,
        }
    }

    /// A defined stream's name as first written (scripts match names
    /// regardless of case).
    fn stream_name(&self, name: &str) -> String {
        self.streams
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or_else(|| name.to_string(), |(n, _)| n.clone())
    }

    fn stream_schema(&self, name: &str) -> Result<(String, SchemaRef), String> {
        self.streams
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| format!("no stream `{name}`"))
    }

    /// Adds `build` as a stage; its output is a flow of no steps yet.
    fn stage(&mut self, build: Build) -> Flow {
        let (name, output) = (build.name.clone(), build.output.clone());
        self.builds.push(build);
        self.streams.push((name.clone(), output.clone()));
        Flow {
            stream: name,
            arrow: output,
            steps: Vec::new(),
        }
    }

    /// A fresh stage name in this query.
    fn fresh(&mut self) -> String {
        self.made += 1;
        format!("{}__{}", self.name, self.made)
    }

    /// Gives the stages a statement made (from build `first` on) the
    /// instances its `WITH REPLICATE k` asks for.
    fn replicate(&mut self, first: usize, clause: Option<(usize, Location)>) {
        if let Some((k, _)) = clause {
            for b in &mut self.builds[first..] {
                b.replicate = k;
            }
        }
    }

    /// Ends flow `flow` in a stream of the query's name: its steps join the
    /// query's last stage when the flow comes straight from it.
    fn finish(&mut self, flow: Flow, first: usize) {
        let name = self.name.clone();
        let ours = self.builds.len() > first;
        match self.builds.last_mut() {
            Some(b) if ours && b.name == flow.stream && !b.union && b.udf.is_none() => {
                b.after.extend(flow.steps);
                b.output = flow.arrow.clone();
                b.name = name.clone();
            }
            _ => {
                let input = self.stream_schema(&flow.stream).map(|s| s.1);
                self.builds.push(Build::new(
                    name.clone(),
                    vec![flow.stream.clone()],
                    vec![input.unwrap_or_else(|_| flow.arrow.clone())],
                    flow.steps,
                    flow.arrow.clone(),
                ));
            }
        }
        self.streams.push((name, flow.arrow));
    }

    /// A flow's rows as a stream: its own if it has no steps left, else a
    /// new stage's.
    fn materialize(&mut self, flow: Flow) -> Result<(String, SchemaRef), String> {
        if flow.steps.is_empty() {
            return Ok((flow.stream, flow.arrow));
        }
        let name = self.fresh();
        let (_, input) = self.stream_schema(&flow.stream)?;
        self.builds.push(Build::new(
            name.clone(),
            vec![flow.stream],
            vec![input],
            flow.steps,
            flow.arrow.clone(),
        ));
        self.streams.push((name.clone(), flow.arrow.clone()));
        Ok((name, flow.arrow))
    }

    fn flow(&mut self, plan: &LogicalPlan) -> Result<Flow, String> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let (stream, arrow) = self.stream_schema(scan.table_name.table())?;
                let mut flow = Flow {
                    stream,
                    arrow,
                    steps: Vec::new(),
                };
                if scan.fetch.is_some() {
                    return Err("LIMIT has no meaning on an endless stream".into());
                }
                let source = scan.source.schema();
                let input =
                    DFSchema::try_from_qualified_schema(scan.table_name.clone(), source.as_ref())
                        .map_err(|e| e.strip_backtrace())?;
                // Predicates pushed into the scan run first, on its columns.
                for f in &scan.filters {
                    self.filter(&mut flow, f, &input)?;
                }
                if let Some(projection) = &scan.projection {
                    let exprs = projection
                        .iter()
                        .map(|&i| Expr::Column(input.columns()[i].clone()))
                        .collect::<Vec<_>>();
                    self.map(&mut flow, &exprs, &input, &scan.projected_schema)?;
                }
                Ok(flow)
            }
            LogicalPlan::SubqueryAlias(a) => self.flow(&a.input),
            LogicalPlan::Filter(f) => {
                let mut flow = self.flow(&f.input)?;
                self.filter(&mut flow, &f.predicate, f.input.schema())?;
                Ok(flow)
            }
            LogicalPlan::Projection(p) => {
                let mut flow = self.flow(&p.input)?;
                let (exprs, schema) = self.hoist(&mut flow, &p.expr, p.input.schema())?;
                self.map(&mut flow, &exprs, &schema, &p.schema)?;
                Ok(flow)
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Join(j) => self.join(j),
            LogicalPlan::Union(u) => self.union(u),
            LogicalPlan::Limit(l) => self.limit(l),
            LogicalPlan::Sort(s) => self.sort(s),
            LogicalPlan::Distinct(_) => Err(
                "UNION without ALL and SELECT DISTINCT remove duplicates, which an endless stream cannot; use UNION ALL, or COUNT(DISTINCT ...) in a window".into(),
            ),
            other => Err(format!(
                "a streaming query cannot run `{}` yet",
                other.display()
            )),
        }
    }

    /// Keeps the rows of `flow` (of schema `input`) that `predicate` holds for.
    fn filter(
        &mut self,
        flow: &mut Flow,
        predicate: &Expr,
        input: &DFSchema,
    ) -> Result<(), String> {
        let (hoisted, schema) = self.hoist(flow, std::slice::from_ref(predicate), input)?;
        flow.steps
            .push(Step::Filter(physical(&hoisted[0], &schema)?));
        if schema.fields().len() != input.fields().len() {
            // The columns the calls added go again.
            let keep: Vec<Expr> = input.columns().into_iter().map(Expr::Column).collect();
            self.map(flow, &keep, &schema, input)?;
        }
        Ok(())
    }

    fn map(
        &self,
        flow: &mut Flow,
        exprs: &[Expr],
        input: &DFSchema,
        output: &DFSchema,
    ) -> Result<(), String> {
        let exprs = exprs
            .iter()
            .map(|e| physical(e, input))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = with_interval(output.fields().iter().map(|f| f.as_ref().clone()));
        flow.arrow = schema.clone();
        flow.steps.push(Step::Map { exprs, schema });
        Ok(())
    }

    fn aggregate(&mut self, a: &datafusion_expr::logical_plan::Aggregate) -> Result<Flow, String> {
        self.window_used = true;
        let Some(window) = self.window else {
            return Err(
                "an aggregate over a stream needs a window: add WITH TUMBLING(d) or WITH HOPPING(size, hop) after FROM, WHERE or GROUP BY"
                    .into(),
            );
        };
        let mut flow = self.flow(&a.input)?;
        let input_schema = a.input.schema();
        // One map: the group keys, then each aggregate's argument.
        let mut exprs: Vec<Expr> = a.group_expr.clone();
        let mut fields: Vec<ArrowField> = (0..a.group_expr.len())
            .map(|i| a.schema.field(i).as_ref().clone())
            .collect();
        let mut aggs = Vec::new();
        for (j, e) in a.aggr_expr.iter().enumerate() {
            let name = a.schema.field(a.group_expr.len() + j).name().clone();
            let inner = match e {
                Expr::Alias(alias) => alias.expr.as_ref(),
                e => e,
            };
            let Expr::AggregateFunction(f) = inner else {
                return Err(format!("`{e}` is not an aggregate this engine runs"));
            };
            let p = &f.params;
            if p.filter.is_some() || !p.order_by.is_empty() {
                return Err(format!(
                    "`{e}`: FILTER and ORDER BY in aggregates are not supported"
                ));
            }
            if let Some(w) = WasmAggregate::of(&f.func) {
                let Some(function) = self.declared[w.index].aggregate.clone() else {
                    return Err(format!("`{e}` names no aggregate component"));
                };
                if p.distinct {
                    return Err(format!(
                        "`{e}`: DISTINCT applies to the built-in aggregates, not to a component"
                    ));
                }
                let mut columns = Vec::new();
                for (k, arg) in p.args.iter().enumerate() {
                    let name = format!("__arg{j}_{k}");
                    columns.push(argument(arg, name, input_schema, &mut fields, &mut exprs)?);
                }
                aggs.push(Aggregate::user(function, columns, &name));
                continue;
            }
            let fname = f.func.name().to_ascii_lowercase();
            // COUNT(*): no argument, `*`, or a constant that is never null.
            let star = fname == "count"
                && match p.args.as_slice() {
                    [] => true,
                    [Expr::Literal(v, _)] => !v.is_null(),
                    [arg] => arg.to_string() == "*",
                    _ => false,
                };
            let kind = match (fname.as_str(), p.distinct) {
                ("count", false) if star => AggKind::CountStar,
                ("count", false) => AggKind::Count,
                ("count", true) => AggKind::CountDistinct,
                ("sum", false) => AggKind::Sum,
                ("min", _) => AggKind::Min,
                ("max", _) => AggKind::Max,
                ("avg" | "mean", false) => AggKind::Avg,
                _ => {
                    return Err(format!(
                        "`{e}`: windows compute COUNT, COUNT(DISTINCT), SUM, MIN, MAX, AVG and aggregate components"
                    ));
                }
            };
            let arg = if kind == AggKind::CountStar {
                None
            } else {
                let [arg] = p.args.as_slice() else {
                    return Err(format!("`{e}` takes one argument"));
                };
                Some(argument(
                    arg,
                    format!("__arg{j}"),
                    input_schema,
                    &mut fields,
                    &mut exprs,
                )?)
            };
            aggs.push(Aggregate::builtin(kind, arg, &name));
        }
        let (exprs, over) = self.hoist(&mut flow, &exprs, input_schema)?;
        let exprs = exprs
            .iter()
            .map(|e| physical(e, &over))
            .collect::<Result<Vec<_>, _>>()?;
        let pre = with_interval(fields);
        let keys: Vec<usize> = (2..2 + a.group_expr.len()).collect();
        let hopping = window.hopping;
        // Checked here, so a plan that compiles makes its operator.
        let probe = WindowAggregate::new(&pre, hopping, keys.clone(), aggs.clone())
            .map_err(|e| e.to_string())?;
        let output = probe.output_schema();
        let (input, input_schema_arrow) =
            (flow.stream.clone(), self.stream_schema(&flow.stream)?.1);
        let mut before = flow.steps;
        before.push(Step::Map {
            exprs,
            schema: pre.clone(),
        });
        // Without group keys, a parallel aggregate splits in two phases.
        if self.parallelism > 1 && keys.is_empty() && window.session.is_none() {
            let every: Vec<usize> = (0..input_schema_arrow.fields().len()).collect();
            if Partition::new(input_schema_arrow.clone(), every.clone(), 2, 0).is_ok() {
                let aggregate = Build::new(
                    String::new(),
                    vec![input],
                    vec![input_schema_arrow],
                    before,
                    output,
                );
                return self.split_aggregate(aggregate, every, (pre, hopping, aggs));
            }
        }
        // A parallel aggregate's input is partitioned by its group keys, so
        // they are columns of a stream of their own first.
        let parallel = self.parallelism > 1 && !keys.is_empty();
        let (input, input_schema_arrow, before) = if parallel {
            let (stream, schema) = self.materialize(Flow {
                stream: input,
                arrow: pre.clone(),
                steps: before,
            })?;
            (stream, schema, Vec::new())
        } else {
            (input, input_schema_arrow, before)
        };
        let name = self.fresh();
        let windows = match window.session {
            Some(gap) => format!("SESSION with gap {gap} µs"),
            None => format!("HOPPING {} µs every {} µs", hopping.size(), hopping.hop()),
        };
        let describe = format!(
            "window({windows}) group by {} compute {}",
            a.group_expr.len(),
            aggs.iter()
                .map(Aggregate::describe)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let partition = vec![keys.clone()];
        let session = window.session;
        let make: MakeOp = Arc::new(move || {
            let op: Box<dyn TemporalOp> = match session {
                Some(gap) => Box::new(
                    SessionAggregate::new(&pre, gap, keys.clone(), aggs.clone())
                        .map_err(|e| e.to_string())?,
                ),
                None => Box::new(
                    WindowAggregate::new(&pre, hopping, keys.clone(), aggs.clone())
                        .map_err(|e| e.to_string())?,
                ),
            };
            Ok(op)
        });
        let mut build = Build::new(
            name.clone(),
            vec![input],
            vec![input_schema_arrow],
            before,
            output.clone(),
        )
        .with_op((describe, make));
        if parallel {
            build = build.parallel(self.parallelism, partition);
        }
        Ok(self.stage(build))
    }

    /// `UNION ALL`: each input's rows under the union's column names, then
    /// merged by CTI.
    fn union(&mut self, u: &datafusion_expr::logical_plan::Union) -> Result<Flow, String> {
        let mut inputs = Vec::new();
        for input in &u.inputs {
            let mut flow = self.flow(input)?;
            let exprs: Vec<Expr> = input
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            self.map(&mut flow, &exprs, input.schema(), &u.schema)?;
            inputs.push(self.materialize(flow)?.0);
        }
        let output = with_interval(u.schema.fields().iter().map(|f| f.as_ref().clone()));
        let name = self.fresh();
        let schemas = vec![output.clone(); inputs.len()];
        self.builds
            .push(Build::new(name.clone(), inputs, schemas, Vec::new(), output.clone()).union());
        self.streams.push((name.clone(), output.clone()));
        Ok(Flow {
            stream: name,
            arrow: output,
            steps: Vec::new(),
        })
    }

    fn join(&mut self, j: &datafusion_expr::logical_plan::Join) -> Result<Flow, String> {
        let kind = match j.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            other => {
                return Err(format!("a temporal join is INNER or LEFT, not {other}"));
            }
        };
        let left = self.flow(&j.left)?;
        let left = self.materialize(left)?;
        let right = self.flow(&j.right)?;
        let right = self.materialize(right)?;
        let key = |e: &Expr, schema: &DFSchema| -> Result<usize, String> {
            match e {
                Expr::Column(c) => schema
                    .index_of_column(c)
                    .map(|i| i + 2)
                    .map_err(|e| e.strip_backtrace()),
                other => Err(format!(
                    "a join compares columns; `{other}` is an expression: compute it in a query before the join"
                )),
            }
        };
        let (mut lk, mut rk) = (Vec::new(), Vec::new());
        for (l, r) in &j.on {
            lk.push(key(l, j.left.schema())?);
            rk.push(key(r, j.right.schema())?);
        }
        let names: Vec<String> = j.schema.fields().iter().map(|f| f.name().clone()).collect();
        let probe = TemporalJoin::new(&left.1, &right.1, lk.clone(), rk.clone(), kind, &names)
            .map_err(|e| e.to_string())?;
        let output = probe.output_schema();
        let (ls, rs) = (left.1.clone(), right.1.clone());
        let partition = vec![lk.clone(), rk.clone()];
        let make: MakeOp = Arc::new(move || {
            TemporalJoin::new(&ls, &rs, lk.clone(), rk.clone(), kind, &names)
                .map(|j| Box::new(j) as Box<dyn TemporalOp>)
                .map_err(|e| e.to_string())
        });
        let name = self.fresh();
        let describe = format!("{kind:?} join on {} key(s)", j.on.len());
        let mut build = Build::new(
            name.clone(),
            vec![left.0, right.0],
            vec![left.1, right.1],
            Vec::new(),
            output.clone(),
        )
        .with_op((describe, make));
        // A join without equal keys matches any pair: it runs as one vertex.
        if self.parallelism > 1 && !j.on.is_empty() {
            build = build.parallel(self.parallelism, partition);
        }
        self.builds.push(build);
        self.streams.push((name.clone(), output.clone()));
        let mut flow = Flow {
            stream: name,
            arrow: output,
            steps: Vec::new(),
        };
        if let Some(filter) = &j.filter {
            flow.steps.push(Step::Filter(physical(filter, &j.schema)?));
        }
        Ok(flow)
    }
}

/// DataFusion's rewrites that keep a query's meaning on streams: constant
/// folding, equalities of a join's ON into its keys, predicates pushed
/// towards the inputs and projections pruned to the columns read.
pub fn optimize(plan: LogicalPlan) -> Result<LogicalPlan, String> {
    use datafusion_optimizer::OptimizerRule;
    let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
        Arc::new(datafusion_optimizer::simplify_expressions::SimplifyExpressions::new()),
        Arc::new(datafusion_optimizer::extract_equijoin_predicate::ExtractEquijoinPredicate::new()),
        Arc::new(datafusion_optimizer::push_down_filter::PushDownFilter::new()),
        Arc::new(datafusion_optimizer::optimize_projections::OptimizeProjections::new()),
    ];
    datafusion_optimizer::Optimizer::with_rules(rules)
        .optimize(
            plan,
            &datafusion_optimizer::OptimizerContext::new(),
            |_, _| {},
        )
        .map_err(|e| e.strip_backtrace())
}

fn physical(e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>, String> {
    if hoist::has_call(e) {
        return Err(format!(
            "`{e}` calls a component where this engine cannot run it (in a join's condition); call it in a query before or after the join"
        ));
    }
    create_physical_expr(
        e,
        schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .map_err(|e| e.strip_backtrace())
}

/// Adds aggregate argument `arg` (over `input`) to the map before a
/// windowed aggregate as a column `name`; its index in the map's output
/// (interval first).
fn argument(
    arg: &Expr,
    name: String,
    input: &DFSchema,
    fields: &mut Vec<ArrowField>,
    exprs: &mut Vec<Expr>,
) -> Result<usize, String> {
    let (_, field) = arg.to_field(input).map_err(|e| e.strip_backtrace())?;
    fields.push(ArrowField::new(
        name,
        field.data_type().clone(),
        field.is_nullable(),
    ));
    exprs.push(arg.clone());
    Ok(2 + fields.len() - 1)
}
