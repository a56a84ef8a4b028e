//! Binding: every `SELECT` planned by DataFusion's SQL planner against the
//! streams defined before it, which type-checks its expressions, resolves
//! its columns and functions and gives its logical plan.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::{DataFusionError, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::ContextProvider;
use datafusion_expr::{
    AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, Volatility, WindowUDF,
};
use datafusion_sql::planner::{ParserOptions, SqlToRel};
use sqlparser::ast::{self, GroupByExpr, SelectItem, SetExpr};
use sqlparser::tokenizer::Location;
use weir_core::plan::{ErrorPolicy, StageKind, UdfSpec};
use weir_core::schema::arrow_type;

use crate::component::{Components, Declared, Process, WasmAggregate, WasmScalar, World, merged};
use crate::error::{ScriptError, near};
use crate::script::{Input, Output, Select, Statement};
use weir_core::temporal::UserFunction;

/// A statement with what binding found.
#[derive(Debug, Clone)]
pub enum Bound {
    /// An input and its schema (its columns, without the interval).
    Input(Input, SchemaRef),
    /// A query and its logical plan.
    Query(Select, Box<LogicalPlan>),
    /// An output of a stream defined before it.
    Output(Output),
    /// A component, loaded.
    Component(Declared),
    /// A `PROCESS` or `REDUCE`: the stage it runs and the columns it gives.
    Process(Process, UdfSpec, SchemaRef),
}

/// The streams defined so far, and the functions a query may call.
struct Catalog {
    streams: BTreeMap<String, SchemaRef>,
    scalars: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    options: ConfigOptions,
    components: Vec<Declared>,
}

impl Catalog {
    fn new() -> Catalog {
        let mut scalars = HashMap::new();
        for f in datafusion_functions::all_default_functions() {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                scalars.insert(name.to_string(), f.clone());
            }
        }
        let mut aggregates = HashMap::new();
        for f in datafusion_functions_aggregate::all_default_aggregate_functions() {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                aggregates.insert(name.to_string(), f.clone());
            }
        }
        Catalog {
            streams: BTreeMap::new(),
            scalars,
            aggregates,
            options: ConfigOptions::default(),
            components: Vec::new(),
        }
    }

    /// The stream named `name` (names match regardless of case).
    fn stream(&self, name: &str) -> Option<(&String, &SchemaRef)> {
        self.streams
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

impl ContextProvider for Catalog {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        match self.stream(name.table()) {
            Some((_, schema)) => Ok(Arc::new(LogicalTableSource::new(schema.clone()))),
            None => {
                let near = near(name.table(), self.streams.keys().map(String::as_str));
                let hint = if near.is_empty() {
                    format!(
                        "streams defined before it: {}",
                        self.streams.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                } else {
                    format!("did you mean `{}`?", near.join("`, `"))
                };
                Err(DataFusionError::Plan(format!(
                    "no stream `{}` is defined before this statement ({hint})",
                    name.table()
                )))
            }
        }
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalars.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregates.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalars.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Binds `statements` of script `file`, in order; component paths are
/// relative to `base`, and `components` says what they are.
pub fn bind(
    file: &str,
    statements: Vec<Statement>,
    components: &dyn Components,
    base: &Path,
) -> Result<Vec<Bound>, ScriptError> {
    let mut catalog = Catalog::new();
    let mut bound = Vec::new();
    let fail = |message: String, at: Location| ScriptError {
        file: file.to_string(),
        line: at.line,
        column: at.column,
        message,
        hint: None,
    };
    for statement in statements {
        match statement {
            Statement::Component(c) => {
                let path = base.join(&c.path);
                let world = components
                    .world(&path, &c.params)
                    .map_err(|m| fail(format!("component `{}`: {m}", c.name), c.at))?;
                let key = c.name.to_ascii_lowercase();
                let taken =
                    catalog.scalars.contains_key(&key) || catalog.aggregates.contains_key(&key);
                if taken && matches!(world, World::Scalar { .. } | World::Aggregate { .. }) {
                    return Err(fail(
                        format!(
                            "`{}` is the name of a built-in function; give the component another name",
                            c.name
                        ),
                        c.at,
                    ));
                }
                let index = catalog.components.len();
                let mut aggregate = None;
                match &world {
                    World::Scalar { args, returns } => {
                        let f = WasmScalar::new(&c.name, args, returns, index);
                        catalog
                            .scalars
                            .insert(key, Arc::new(ScalarUDF::new_from_impl(f)));
                    }
                    World::Aggregate { args, returns } => {
                        let (make, module) = components
                            .aggregate(&path, &c.params)
                            .map_err(|m| fail(format!("component `{}`: {m}", c.name), c.at))?;
                        aggregate = Some(UserFunction {
                            name: c.name.clone(),
                            module,
                            returns: arrow_type(returns.ty),
                            nullable: returns.nullable,
                            make,
                        });
                        let f = WasmAggregate::new(&c.name, args, returns, index);
                        catalog
                            .aggregates
                            .insert(key, Arc::new(AggregateUDF::new_from_impl(f)));
                    }
                    World::Processor | World::Reducer => {}
                }
                let declared = Declared {
                    name: c.name,
                    path,
                    params: c.params,
                    world,
                    aggregate,
                };
                catalog.components.push(declared.clone());
                bound.push(Bound::Component(declared));
            }
            // Read by lowering before binding.
            Statement::Parallelism(..) => {}
            Statement::Process(p) => {
                let (spec, schema) = process(&catalog, &p, components).map_err(|e| {
                    let (message, at, hint) = e;
                    ScriptError {
                        hint,
                        ..fail(message, at)
                    }
                })?;
                catalog.streams.insert(p.name.clone(), schema.clone());
                bound.push(Bound::Process(p, spec, schema));
            }
            Statement::Input(input) => {
                let schema = Arc::new(Schema::new(
                    input
                        .columns
                        .iter()
                        .map(|f| ArrowField::new(&f.name, arrow_type(f.ty), f.nullable))
                        .collect::<Vec<_>>(),
                ));
                catalog.streams.insert(input.name.clone(), schema.clone());
                bound.push(Bound::Input(input, schema));
            }
            Statement::Select(mut select) => {
                group_implicitly(&mut select.query, &catalog);
                let planner = SqlToRel::new_with_options(
                    &catalog,
                    ParserOptions {
                        enable_ident_normalization: false,
                        collect_spans: true,
                        map_string_types_to_utf8view: false,
                        ..ParserOptions::default()
                    },
                );
                let plan = planner
                    .sql_statement_to_plan(ast::Statement::Query(select.query.clone()))
                    .map_err(|e| at_call(planner_error(file, &e, select.at), &select))?;
                // Type checking and coercion: DataFusion's analyzer.
                let plan = datafusion_optimizer::Analyzer::new()
                    .execute_and_check(plan, &catalog.options, |_, _| {})
                    .map_err(|e| at_call(planner_error(file, &e, select.at), &select))?;
                deterministic(&plan).map_err(|m| fail(m, select.at))?;
                if select.window.is_some() && !aggregates(&plan) {
                    let at = select.window.map_or(select.at, |w| w.at);
                    return Err(fail(
                        "a window clause applies to a query that aggregates (COUNT, SUM, MIN, MAX, AVG ...) or keeps a top-N (ORDER BY ... LIMIT n)".into(),
                        at,
                    ));
                }
                let schema = output_schema(&plan).map_err(|m| fail(m, select.at))?;
                catalog.streams.insert(select.name.clone(), schema);
                bound.push(Bound::Query(select, Box::new(plan)));
            }
            Statement::Output(output) => {
                if catalog.stream(&output.name).is_none() {
                    let near = near(&output.name, catalog.streams.keys().map(String::as_str));
                    return Err(ScriptError {
                        file: file.to_string(),
                        line: output.at.line,
                        column: output.at.column,
                        message: format!(
                            "no stream `{}` is defined before this output",
                            output.name
                        ),
                        hint: (!near.is_empty())
                            .then(|| format!("did you mean `{}`?", near.join("`, `"))),
                    });
                }
                bound.push(Bound::Output(output));
            }
        }
    }
    Ok(bound)
}

/// A `PROCESS` or `REDUCE` statement's stage and the columns it gives, or
/// what is wrong, where, and a hint.
fn process(
    catalog: &Catalog,
    p: &Process,
    components: &dyn Components,
) -> Result<(UdfSpec, SchemaRef), (String, Location, Option<String>)> {
    let Some(declared) = catalog
        .components
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(&p.component))
    else {
        let names = catalog.components.iter().map(|d| d.name.as_str());
        let near = near(&p.component, names);
        return Err((
            format!(
                "no component `{}` is declared before this statement",
                p.component
            ),
            p.component_at,
            Some(if near.is_empty() {
                format!(
                    "declare it first: `{} = COMPONENT \"path.wasm\";`",
                    p.component
                )
            } else {
                format!("did you mean `{}`?", near.join("`, `"))
            }),
        ));
    };
    let (kind, statement) = match &p.key {
        None => (StageKind::Processor, "PROCESS"),
        Some(_) => (StageKind::Reducer, "REDUCE"),
    };
    let fits = matches!(
        (&declared.world, kind),
        (World::Processor, StageKind::Processor) | (World::Reducer, StageKind::Reducer)
    );
    if !fits {
        let hint = match &declared.world {
            World::Processor => format!(
                "run a processor with `PROCESS {} USING {}`",
                p.input, declared.name
            ),
            World::Reducer => format!(
                "run a reducer with `REDUCE {} ON key USING {}`",
                p.input, declared.name
            ),
            World::Scalar { .. } => format!(
                "call a scalar function in an expression: `SELECT {}(...) AS x FROM {}`",
                declared.name, p.input
            ),
            World::Aggregate { .. } => format!(
                "call an aggregate in a windowed query: `SELECT key, {}(...) AS x FROM {} WITH TUMBLING(d)`",
                declared.name, p.input
            ),
        };
        return Err((
            format!(
                "`{}` exports the `{}` world; {statement} runs a {}",
                declared.name,
                declared.world.name(),
                if kind == StageKind::Processor {
                    "processor"
                } else {
                    "reducer"
                }
            ),
            p.component_at,
            Some(hint),
        ));
    }
    let Some((_, input)) = catalog.stream(&p.input) else {
        let near = near(&p.input, catalog.streams.keys().map(String::as_str));
        return Err((
            format!("no stream `{}` is defined before this statement", p.input),
            p.at,
            (!near.is_empty()).then(|| format!("did you mean `{}`?", near.join("`, `"))),
        ));
    };
    let spec = UdfSpec {
        kind,
        component: declared.path.clone(),
        params: merged(&declared.params, &p.params),
        key: p.key.clone(),
        output: None,
        args: Vec::new(),
        on_trap: ErrorPolicy::Fail,
        limits: Default::default(),
    };
    let events = crate::pipeline::with_interval(input.fields().iter().map(|f| f.as_ref().clone()));
    let output = components
        .stage_output(&p.name, &spec, events)
        .map_err(|m| (m, p.at, None))?;
    let user: Vec<ArrowField> = output.fields()[2..]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    Ok((spec, Arc::new(Schema::new(user))))
}

/// As in SCOPE, a query that aggregates without `GROUP BY` groups by its
/// other `SELECT` columns.
fn group_implicitly(query: &mut ast::Query, catalog: &Catalog) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty()) {
        return;
    }
    let is_aggregate = |e: &ast::Expr| {
        let mut found = false;
        let _ = ast::visit_expressions(e, |e| {
            if let ast::Expr::Function(f) = e
                && catalog.get_aggregate_meta(&f.name.to_string()).is_some()
            {
                found = true;
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        found
    };
    let mut keys = Vec::new();
    let mut any_aggregate = false;
    for item in &select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return,
        };
        if is_aggregate(expr) {
            any_aggregate = true;
        } else {
            keys.push(expr.clone());
        }
    }
    if any_aggregate && !keys.is_empty() {
        select.group_by = GroupByExpr::Expressions(keys, Vec::new());
    }
}

/// Refuses functions whose result is not a function of their arguments
/// (`now()`, `random()`): replay must give the same output.
fn deterministic(plan: &LogicalPlan) -> Result<(), String> {
    let mut bad = None;
    let _ = plan.apply(|node| {
        for e in node.expressions() {
            let _ = e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    bad = Some(f.func.name().to_string());
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match bad {
        Some(name) => Err(format!(
            "`{name}()` gives a different value each time it runs, so a replay would not reproduce the output; use event time, or a UDF with a seed"
        )),
        None => Ok(()),
    }
}

/// Whether the plan aggregates.
/// Whether a query reads its window clause: it aggregates or keeps a top-N.
fn aggregates(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if matches!(node, LogicalPlan::Aggregate(_) | LogicalPlan::Limit(_))
            || matches!(node, LogicalPlan::Sort(s) if s.fetch.is_some())
        {
            found = true;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The columns a query gives, each a column type Weir streams hold, each
/// name once.
fn output_schema(plan: &LogicalPlan) -> Result<SchemaRef, String> {
    let mut fields: Vec<ArrowField> = Vec::new();
    for f in plan.schema().fields() {
        if weir_core::schema::column_type(f.data_type()).is_none() {
            return Err(format!(
                "column `{}` is of type {}; streams hold long, double, string and bool (CAST it)",
                f.name(),
                f.data_type()
            ));
        }
        if fields
            .iter()
            .any(|g| g.name().eq_ignore_ascii_case(f.name()))
        {
            return Err(format!(
                "the query gives two columns named `{}`; name them apart with AS",
                f.name()
            ));
        }
        fields.push(f.as_ref().clone());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// An error about a call of function `f` that DataFusion placed at the
/// statement, moved to the first call of `f` in it.
fn at_call(mut e: ScriptError, select: &Select) -> ScriptError {
    use sqlparser::ast::Spanned;
    let (line, column) = (select.at.line, select.at.column);
    let Some(name) = e
        .message
        .split_once("call to '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(name, _)| name.to_string())
    else {
        return e;
    };
    if (e.line, e.column) != (line, column) {
        return e;
    }
    let mut at = None;
    let _ = ast::visit_expressions(select.query.as_ref(), |x| {
        if let ast::Expr::Function(f) = x
            && at.is_none()
            && f.name.to_string().eq_ignore_ascii_case(&name)
        {
            at = Some(f.name.span().start);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if let Some(at) = at.filter(|a| a.line > 0) {
        (e.line, e.column) = (at.line, at.column);
    }
    e
}

/// A planner error, at the place DataFusion names (or the statement).
fn planner_error(file: &str, e: &DataFusionError, at: Location) -> ScriptError {
    let full = e.strip_backtrace();
    let (message, at) = match e.diagnostic() {
        // The catalog's own words about a stream it does not have.
        Some(d) if full.contains("no stream `") => (
            full[full.find("no stream `").unwrap_or(0)..].to_string(),
            d.span
                .as_ref()
                .map_or(at, |s| Location::new(s.start.line, s.start.column)),
        ),
        Some(d) => (
            d.message.clone(),
            d.span
                .as_ref()
                .map_or(at, |s| Location::new(s.start.line, s.start.column)),
        ),
        None => (full.clone(), at),
    };
    let message = message
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("Schema error: ")
        .to_string();
    // What DataFusion adds: the types that clash, the columns near a name.
    let notes: Vec<&str> = e
        .diagnostic()
        .map(|d| {
            d.notes
                .iter()
                .map(|n| n.message.as_str())
                .chain(d.helps.iter().map(|h| h.message.as_str()))
                .collect()
        })
        .unwrap_or_default();
    ScriptError {
        file: file.to_string(),
        line: at.line,
        column: at.column,
        message,
        hint: (!notes.is_empty()).then(|| notes.join(", ")),
    }
}
