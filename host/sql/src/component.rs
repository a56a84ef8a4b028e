//! User code in scripts: Wasm components declared by name and run by
//! `PROCESS`, `REDUCE` and calls in expressions.
//!
//! ```text
//! BotFilter = COMPONENT "bot_filter.wasm" WITH (blocked_prefix = '10.66.');
//! Humans    = PROCESS Clicks USING BotFilter;
//! Flags     = REDUCE Humans ON user USING UserStats WITH (max_clicks = 8);
//! Eur       = SELECT ToEur(price) AS eur FROM Bids;
//! ```
//!
//! The compiler does not run Wasm itself: what it needs to know about a
//! component (its world, a scalar function's signature, the columns a
//! stage of it gives) comes from a [`Components`] the host provides.

use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use sqlparser::tokenizer::{Location, Token};
use weir_core::plan::{ParamValue, ParamValueSpec, UdfSpec};
use weir_core::schema::Field;
use weir_core::temporal::{MakeUserAggregate, UserFunction};

use crate::error::ScriptError;
use crate::script::{Cursor, error};

/// `Name = COMPONENT "path" [WITH (name = value, ...)];`
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// The name scripts use for it.
    pub name: String,
    /// The component file, as written (relative to the script's directory).
    pub path: String,
    /// Parameters passed to its `init`.
    pub params: Vec<ParamValueSpec>,
    /// Where the statement starts.
    pub at: Location,
}

/// `Name = PROCESS Stream USING Component [WITH (...)];` or
/// `Name = REDUCE Stream ON column USING Component [WITH (...)];`
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// The stream it defines.
    pub name: String,
    /// The stream it reads.
    pub input: String,
    /// The key column (`REDUCE ... ON key`); `None` for `PROCESS`.
    pub key: Option<String>,
    /// The component's name.
    pub component: String,
    /// Parameters that add to (or replace) the component's.
    pub params: Vec<ParamValueSpec>,
    /// Where the statement starts.
    pub at: Location,
    /// Where the component's name is.
    pub component_at: Location,
    /// `WITH PARALLELISM n`: the rVertices it runs as, and where the clause is.
    pub parallelism: Option<(usize, Location)>,
    /// `WITH REPLICATE k`: the instances of each of its rVertices, on
    /// different members of a cluster, and where the clause is.
    pub replicate: Option<(usize, Location)>,
}

/// The world a component exports, as far as a script cares.
#[derive(Debug, Clone, PartialEq)]
pub enum World {
    /// `processor`: `PROCESS`.
    Processor,
    /// `reducer` (any of its variants): `REDUCE`.
    Reducer,
    /// `scalar`: a function called in expressions, with its argument
    /// columns in order and its result.
    Scalar {
        /// The arguments.
        args: Vec<Field>,
        /// The result.
        returns: Field,
    },
    /// `aggregate`: a user-defined aggregate called in a windowed query,
    /// with its argument columns in order and its result.
    Aggregate {
        /// The arguments.
        args: Vec<Field>,
        /// The result.
        returns: Field,
    },
}

impl World {
    /// The world's name in `wit/udf.wit`.
    pub fn name(&self) -> &'static str {
        match self {
            World::Processor => "processor",
            World::Reducer => "reducer",
            World::Scalar { .. } => "scalar",
            World::Aggregate { .. } => "aggregate",
        }
    }
}

/// What the compiler learns about components from the host that runs them.
pub trait Components {
    /// Loads the component at `path`, initialised with `params`, and tells
    /// its world (for a scalar function, its signature).
    fn world(&self, path: &Path, params: &[ParamValueSpec]) -> Result<World, String>;

    /// The schema (interval first) of the stream a stage named `stage`
    /// running `spec` gives over input of schema `input`, or why the
    /// component cannot run there (a column it reads is missing, ...).
    fn stage_output(
        &self,
        stage: &str,
        spec: &UdfSpec,
        input: SchemaRef,
    ) -> Result<SchemaRef, String>;

    /// How to make running instances of the aggregate component at `path`
    /// (world `aggregate`), initialised with `params`, and what shows the
    /// module that runs it (its file and version).
    fn aggregate(
        &self,
        path: &Path,
        params: &[ParamValueSpec],
    ) -> Result<(MakeUserAggregate, String), String> {
        let _ = params;
        Err(format!(
            "cannot run {}: this compiler runs without a Wasm runtime",
            path.display()
        ))
    }
}

/// For scripts that declare no component: every question is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoComponents;

impl Components for NoComponents {
    fn world(&self, path: &Path, _: &[ParamValueSpec]) -> Result<World, String> {
        Err(format!(
            "cannot load {}: this compiler runs without a Wasm runtime",
            path.display()
        ))
    }

    fn stage_output(&self, stage: &str, _: &UdfSpec, _: SchemaRef) -> Result<SchemaRef, String> {
        Err(format!(
            "stage `{stage}`: this compiler runs without a Wasm runtime"
        ))
    }
}

/// A declared component, resolved.
#[derive(Debug, Clone)]
pub struct Declared {
    /// Its name in the script.
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Its parameters.
    pub params: Vec<ParamValueSpec>,
    /// What it exports.
    pub world: World,
    /// A user-defined aggregate: how queries call it.
    pub aggregate: Option<UserFunction>,
}

/// Parses what follows `Name = COMPONENT`.
pub(crate) fn component(
    mut c: Cursor<'_>,
    name: String,
    at: Location,
) -> Result<Component, ScriptError> {
    let path = c.path()?;
    let params = params(&mut c)?;
    c.done()?;
    Ok(Component {
        name,
        path,
        params,
        at,
    })
}

/// Parses what follows `Name = PROCESS` (`reduce`: `Name = REDUCE`).
pub(crate) fn process(
    mut c: Cursor<'_>,
    name: String,
    at: Location,
    reduce: bool,
) -> Result<Process, ScriptError> {
    let input = c.ident("the name of the stream to read")?;
    let key = if reduce {
        c.expect_keyword("ON")?;
        Some(c.ident("the key column the reducer groups by")?)
    } else {
        None
    };
    c.expect_keyword("USING")?;
    let component_at = c.at();
    let component = c.ident("the name of a component declared with `Name = COMPONENT \"path\"`")?;
    let params = params(&mut c)?;
    // `WITH PARALLELISM n` and `WITH REPLICATE k`, in either order.
    let (mut parallelism, mut replicate) = (None, None);
    while let Some(kind) = with_clause(&c) {
        let clause_at = c.at();
        let (slot, what) = match kind {
            Clause::Parallelism => (&mut parallelism, "parallelism"),
            Clause::Replicate => (&mut replicate, "replicate"),
        };
        if slot.is_some() {
            return Err(error(
                c.file,
                clause_at,
                format!("a statement has one {what} clause"),
            ));
        }
        c.pos += 2;
        *slot = Some(match kind {
            Clause::Parallelism => (crate::script::parallelism(&mut c)?, clause_at),
            Clause::Replicate => (crate::script::replicate(&mut c)?, clause_at),
        });
    }
    c.done()?;
    Ok(Process {
        name,
        input,
        key,
        component,
        params,
        at,
        component_at,
        parallelism,
        replicate,
    })
}

/// A statement's clause after its parameters.
#[derive(Clone, Copy)]
enum Clause {
    Parallelism,
    Replicate,
}

/// Whether the cursor is at `WITH PARALLELISM` or `WITH REPLICATE`.
fn with_clause(c: &Cursor<'_>) -> Option<Clause> {
    let word = |i: usize, w: &str| {
        matches!(c.tokens.get(c.pos + i).map(|t| &t.token),
            Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
    };
    if !word(0, "WITH") {
        None
    } else if word(1, "PARALLELISM") {
        Some(Clause::Parallelism)
    } else if word(1, "REPLICATE") {
        Some(Clause::Replicate)
    } else {
        None
    }
}

/// `[WITH (name = value, ...)]`: integers, decimals, quoted text, `true`
/// and `false`.
fn params(c: &mut Cursor<'_>) -> Result<Vec<ParamValueSpec>, ScriptError> {
    let mut params: Vec<ParamValueSpec> = Vec::new();
    if with_clause(c).is_some() || !c.keyword("WITH") {
        return Ok(params);
    }
    c.expect(Token::LParen)?;
    loop {
        let name_at = c.at();
        let name = c.ident("a parameter name")?;
        if params.iter().any(|p| p.name == name) {
            return Err(error(
                c.file,
                name_at,
                format!("parameter `{name}` is given twice"),
            ));
        }
        c.expect(Token::Eq)?;
        let value_at = c.at();
        let minus = c.peek().is_some_and(|t| t.token == Token::Minus);
        if minus {
            c.pos += 1;
        }
        let value = match c.peek().map(|t| t.token.clone()) {
            Some(Token::Number(n, _)) => {
                let text = if minus { format!("-{n}") } else { n };
                match text.parse::<i64>() {
                    Ok(i) => ParamValue::Int(i),
                    Err(_) => ParamValue::Float(text.parse::<f64>().map_err(|_| {
                        error(c.file, value_at, format!("`{text}` is not a number"))
                    })?),
                }
            }
            Some(Token::SingleQuotedString(s)) if !minus => ParamValue::Text(s),
            Some(Token::Word(w)) if !minus && w.quote_style == Some('"') => {
                ParamValue::Text(w.value)
            }
            Some(Token::Word(w))
                if !minus && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("true") =>
            {
                ParamValue::Flag(true)
            }
            Some(Token::Word(w))
                if !minus && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("false") =>
            {
                ParamValue::Flag(false)
            }
            _ => return c.fail("a value: a number, 'text', true or false"),
        };
        c.pos += 1;
        params.push(ParamValueSpec { name, value });
        if c.peek().is_some_and(|t| t.token == Token::Comma) {
            c.pos += 1;
            continue;
        }
        c.expect(Token::RParen)?;
        return Ok(params);
    }
}

/// `base` with `extra` laid over it (a use's parameters over the
/// declaration's).
pub(crate) fn merged(base: &[ParamValueSpec], extra: &[ParamValueSpec]) -> Vec<ParamValueSpec> {
    let mut out: Vec<ParamValueSpec> = base
        .iter()
        .filter(|p| !extra.iter().any(|e| e.name == p.name))
        .cloned()
        .collect();
    out.extend(extra.iter().cloned());
    out
}

/// A component called in expressions as DataFusion sees it while binding:
/// its name, argument types and result. DataFusion never runs it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Callable {
    name: String,
    signature: datafusion_expr::Signature,
    returns: arrow_schema::DataType,
    nullable: bool,
    /// Which declared component it is (in declaration order).
    pub(crate) index: usize,
}

impl Callable {
    /// The function of component `name`, the `index`th declared.
    fn new(name: &str, args: &[Field], returns: &Field, index: usize) -> Callable {
        let types = args
            .iter()
            .map(|f| weir_core::schema::arrow_type(f.ty))
            .collect();
        Callable {
            name: name.to_ascii_lowercase(),
            signature: datafusion_expr::Signature::exact(
                types,
                datafusion_expr::Volatility::Immutable,
            ),
            returns: weir_core::schema::arrow_type(returns.ty),
            nullable: returns.nullable,
            index,
        }
    }
}

/// A scalar component: lowering moves every call into a stage that runs
/// the component.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct WasmScalar(pub(crate) Callable);

/// An aggregate component: lowering turns each call into a user-defined
/// aggregate of a windowed aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct WasmAggregate(pub(crate) Callable);

impl WasmScalar {
    /// The function for the scalar component `name`, the `index`th declared.
    pub(crate) fn new(name: &str, args: &[Field], returns: &Field, index: usize) -> WasmScalar {
        WasmScalar(Callable::new(name, args, returns, index))
    }

    /// The component a call `f` calls, if `f` calls one.
    pub(crate) fn of(f: &datafusion_expr::ScalarUDF) -> Option<&Callable> {
        let inner: &dyn std::any::Any = f.inner().as_ref();
        inner.downcast_ref::<WasmScalar>().map(|w| &w.0)
    }
}

impl WasmAggregate {
    /// The function for the aggregate component `name`, the `index`th declared.
    pub(crate) fn new(name: &str, args: &[Field], returns: &Field, index: usize) -> WasmAggregate {
        WasmAggregate(Callable::new(name, args, returns, index))
    }

    /// The component a call of `f` calls, if `f` is one.
    pub(crate) fn of(f: &datafusion_expr::AggregateUDF) -> Option<&Callable> {
        let inner: &dyn std::any::Any = f.inner().as_ref();
        inner.downcast_ref::<WasmAggregate>().map(|w| &w.0)
    }
}

impl datafusion_expr::ScalarUDFImpl for WasmScalar {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn signature(&self) -> &datafusion_expr::Signature {
        &self.0.signature
    }

    fn return_type(
        &self,
        _: &[arrow_schema::DataType],
    ) -> datafusion_common::Result<arrow_schema::DataType> {
        Ok(self.0.returns.clone())
    }

    fn return_field_from_args(
        &self,
        _: datafusion_expr::ReturnFieldArgs,
    ) -> datafusion_common::Result<arrow_schema::FieldRef> {
        Ok(std::sync::Arc::new(arrow_schema::Field::new(
            &self.0.name,
            self.0.returns.clone(),
            self.0.nullable,
        )))
    }

    fn invoke_with_args(
        &self,
        _: datafusion_expr::ScalarFunctionArgs,
    ) -> datafusion_common::Result<datafusion_expr::ColumnarValue> {
        Err(datafusion_common::DataFusionError::Execution(format!(
            "`{}` is a Wasm component: it runs in a stage of its own, not inside an expression here",
            self.0.name
        )))
    }
}

impl datafusion_expr::AggregateUDFImpl for WasmAggregate {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn signature(&self) -> &datafusion_expr::Signature {
        &self.0.signature
    }

    fn return_type(
        &self,
        _: &[arrow_schema::DataType],
    ) -> datafusion_common::Result<arrow_schema::DataType> {
        Ok(self.0.returns.clone())
    }

    fn is_nullable(&self) -> bool {
        self.0.nullable
    }

    fn accumulator(
        &self,
        _: datafusion_expr::function::AccumulatorArgs,
    ) -> datafusion_common::Result<Box<dyn datafusion_expr::Accumulator>> {
        Err(datafusion_common::DataFusionError::Execution(format!(
            "`{}` is a Wasm component: it runs inside a windowed aggregate, not here",
            self.0.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::script::{Statement, parse};
    use weir_core::plan::ParamValue;

    fn one(text: &str) -> Statement {
        parse("t.wsql", text).expect("parses").remove(0)
    }

    #[test]
    fn components_and_their_uses_take_their_forms() {
        let Statement::Component(c) =
            one("Bots = COMPONENT \"b.wasm\" WITH (p = '10.', n = -3, x = 1.5, on = true);")
        else {
            panic!("a component");
        };
        assert_eq!((c.name.as_str(), c.path.as_str()), ("Bots", "b.wasm"));
        let values: Vec<&ParamValue> = c.params.iter().map(|p| &p.value).collect();
        assert_eq!(
            values,
            [
                &ParamValue::Text("10.".into()),
                &ParamValue::Int(-3),
                &ParamValue::Float(1.5),
                &ParamValue::Flag(true)
            ]
        );
        let Statement::Process(p) = one("H = PROCESS Clicks USING Bots;") else {
            panic!("a process");
        };
        assert_eq!((p.input.as_str(), p.key.as_ref()), ("Clicks", None));
        let Statement::Process(r) = one("T = reduce H on user using Sum with (k = 2);") else {
            panic!("a reduce");
        };
        assert_eq!(r.key.as_deref(), Some("user"));
        assert_eq!(r.component, "Sum");
        assert_eq!(r.params[0].value, ParamValue::Int(2));
        assert_eq!(r.component_at.column, 28);
    }

    #[test]
    fn bad_component_statements_say_where_and_what() {
        let fails = |text: &str| parse("t.wsql", text).expect_err("refused").to_string();
        assert!(
            fails("B = COMPONENT b.wasm;").contains("t.wsql:1:15: expected a quoted path"),
            "{}",
            fails("B = COMPONENT b.wasm;")
        );
        assert!(fails("T = REDUCE H USING S;").contains("t.wsql:1:14: expected `ON`"));
        assert!(
            fails("B = COMPONENT 'b' WITH (p = 1, p = 2);")
                .contains("parameter `p` is given twice")
        );
        assert!(fails("B = COMPONENT 'b' WITH (p = x);").contains("expected a value"));
        assert!(fails("H = PROCESS C USING;").contains("expected the name of a component"));
    }
}
