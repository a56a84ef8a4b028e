//! The statements of a script, parsed with `sqlparser`'s tokenizer (which
//! keeps every token's line and column) and, for `SELECT`s, its parser.

use sqlparser::ast::Query;
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use weir_core::schema::{ColumnType, Field};
use weir_core::temporal::{Hopping, Lifetime};

use crate::component::{self, Component, Process};
use crate::duration::unit_scale;
use crate::error::ScriptError;

mod nexmark;
mod rewrite;
mod select;

pub use rewrite::rewrite;
use select::select;
pub(crate) use select::{parallelism, replicate};

/// `Name = INPUT "path" SCHEMA (col type, ...) EVENTTIME col [unit]
/// [ENDTIME col] [LIFETIME d];`
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The stream's name.
    pub name: String,
    /// The file (offline) it is read from.
    pub path: String,
    /// Its columns.
    pub columns: Vec<Field>,
    /// The column events start at.
    pub event_time: String,
    /// The column events end at, if any.
    pub end_time: Option<String>,
    /// Microseconds per unit of the time columns (1: microseconds).
    pub time_scale: i64,
    /// How long each event lasts (µs), when it has no end column; a point
    /// (1 µs) when neither is given.
    pub lifetime: Option<i64>,
    /// `INPUT NEXMARK stream (...)`: generated instead of read.
    pub nexmark: Option<Nexmark>,
    /// Where the statement starts.
    pub at: Location,
}

/// What an `INPUT NEXMARK` statement generates.
#[derive(Debug, Clone, PartialEq)]
pub struct Nexmark {
    /// Which stream.
    pub kind: weir_nexmark::Kind,
    /// What to generate.
    pub config: weir_nexmark::Config,
    /// A node generates in step with the wall clock (`pace => 1`).
    pub paced: bool,
}

/// A window clause: `WITH TUMBLING(d)`, `WITH HOPPING(size, hop)` or
/// `WITH SESSION(gap)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The windows (for a session window, tumbling windows of the gap,
    /// which nothing reads).
    pub hopping: Hopping,
    /// Session windows with this gap (µs) instead.
    pub session: Option<i64>,
    /// Where the clause is.
    pub at: Location,
}

/// `Name = SELECT ... [WITH TUMBLING(d) | WITH HOPPING(size, hop)];`
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// The stream's name.
    pub name: String,
    /// The query, without its window clause.
    pub query: Box<Query>,
    /// The window clause.
    pub window: Option<Window>,
    /// A lifetime change of the query's output: `WITH LIFETIME d`,
    /// `WITH SHIFT [-]d`, `WITH EXTEND [-]d` or `WITH POINT [AT column]`.
    pub lifetime: Option<(Lifetime, Location)>,
    /// `WITH POINT AT column`: the column whose time each event becomes a
    /// point at (never before its start).
    pub point_at: Option<(String, Location)>,
    /// `LIMIT n BY column, ...`: the columns a top-N ranks within.
    pub limit_by: Vec<(String, Location)>,
    /// `WITH PARALLELISM n`: the rVertices its keyed stage runs as.
    pub parallelism: Option<(usize, Location)>,
    /// `WITH REPLICATE k`: the instances of each of its rVertices that run
    /// side by side on different members of a cluster.
    pub replicate: Option<(usize, Location)>,
    /// Where the statement starts.
    pub at: Location,
}

/// `OUTPUT Name TO "path" | DISCARD [WITH INTERVAL];`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The stream written.
    pub name: String,
    /// The file, or `None` for `TO DISCARD` (rows counted, not written).
    pub path: Option<String>,
    /// Whether every line carries `_start` and `_end`.
    pub interval: bool,
    /// Where the statement starts.
    pub at: Location,
}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// A stream read from outside.
    Input(Input),
    /// A stream computed by a query.
    Select(Select),
    /// A stream written out.
    Output(Output),
    /// A Wasm component, by name.
    Component(Component),
    /// A stream computed by a component (`PROCESS` or `REDUCE`).
    Process(Process),
    /// `SET PARALLELISM n;`: the parallelism of the script's keyed stages
    /// that set none (over the command line's `--parallelism`).
    Parallelism(usize, Location),
}

impl Statement {
    /// The stream the statement defines (none for an output).
    pub fn defines(&self) -> Option<&str> {
        match self {
            Statement::Input(i) => Some(&i.name),
            Statement::Select(s) => Some(&s.name),
            Statement::Output(_) => None,
            Statement::Component(c) => Some(&c.name),
            Statement::Process(p) => Some(&p.name),
            Statement::Parallelism(..) => None,
        }
    }

    /// Where it starts.
    pub fn at(&self) -> Location {
        match self {
            Statement::Input(i) => i.at,
            Statement::Select(s) => s.at,
            Statement::Output(o) => o.at,
            Statement::Component(c) => c.at,
            Statement::Process(p) => p.at,
            Statement::Parallelism(_, at) => *at,
        }
    }
}

/// Parses script `text` (from `file`, for errors).
pub fn parse(file: &str, text: &str) -> Result<Vec<Statement>, ScriptError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| {
            let (line, column) = (e.location.line, e.location.column);
            ScriptError {
                file: file.to_string(),
                line,
                column,
                message: e.message,
                hint: None,
            }
        })?;
    let tokens: Vec<TokenWithSpan> = tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mut statements = Vec::new();
    let mut part = Vec::new();
    let mut depth = 0i32;
    for t in tokens {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                if !part.is_empty() {
                    statements.push(statement(file, std::mem::take(&mut part), t.span.start)?);
                }
                depth = 0;
                continue;
            }
            _ => {}
        }
        part.push(t);
    }
    if let Some(first) = part.first() {
        return Err(error(
            file,
            first.span.start,
            "this statement has no `;` at its end".into(),
        ));
    }
    let mut seen: Vec<(&str, Location)> = Vec::new();
    for s in &statements {
        if let Some(name) = s.defines()
            && name.contains("__")
        {
            return Err(error(
                file,
                s.at(),
                format!(
                    "`{name}`: a stream's name may not contain `__` (the stages a script compiles to are named that way)"
                ),
            ));
        }
        if let Some(name) = s.defines() {
            if let Some((_, before)) = seen.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(error(
                    file,
                    s.at(),
                    format!(
                        "`{name}` is already defined at line {}; each stream is defined once",
                        before.line
                    ),
                ));
            }
            seen.push((name, s.at()));
        }
    }
    Ok(statements)
}

pub(crate) fn error(file: &str, at: Location, message: String) -> ScriptError {
    ScriptError {
        file: file.to_string(),
        line: at.line,
        column: at.column,
        message,
        hint: None,
    }
}

/// The tokens of one statement, read in order.
pub(crate) struct Cursor<'a> {
    pub(crate) file: &'a str,
    pub(crate) tokens: Vec<TokenWithSpan>,
    pub(crate) pos: usize,
    /// Where the statement's `;` is.
    pub(crate) end: Location,
}

impl Cursor<'_> {
    pub(crate) fn peek(&self) -> Option<&TokenWithSpan> {
        self.tokens.get(self.pos)
    }

    pub(crate) fn at(&self) -> Location {
        self.peek().map_or(self.end, |t| t.span.start)
    }

    pub(crate) fn found(&self) -> String {
        match self.peek() {
            Some(t) => format!("`{}`", t.token),
            None => "`;`".into(),
        }
    }

    pub(crate) fn fail<T>(&self, expected: &str) -> Result<T, ScriptError> {
        Err(error(
            self.file,
            self.at(),
            format!("expected {expected}, found {}", self.found()),
        ))
    }

    /// The next token if it is the keyword `word` (any case).
    pub(crate) fn keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(TokenWithSpan {
                token: Token::Word(w),
                ..
            }) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn expect_keyword(&mut self, word: &str) -> Result<(), ScriptError> {
        if self.keyword(word) {
            Ok(())
        } else {
            self.fail(&format!("`{word}`"))
        }
    }

    pub(crate) fn expect(&mut self, token: Token) -> Result<(), ScriptError> {
        if self.peek().is_some_and(|t| t.token == token) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(&format!("`{token}`"))
        }
    }

    /// A name (a bare or `[`/backquote-quoted word).
    pub(crate) fn ident(&mut self, what: &str) -> Result<String, ScriptError> {
        match self.peek() {
            Some(TokenWithSpan {
                token: Token::Word(w),
                ..
            }) if w.quote_style != Some('"') => {
                let name = w.value.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => self.fail(what),
        }
    }

    /// A quoted path: `"file"` or `'file'`.
    pub(crate) fn path(&mut self) -> Result<String, ScriptError> {
        let text = match self.peek().map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style == Some('"') => w.value.clone(),
            Some(Token::SingleQuotedString(s)) => s.clone(),
            _ => return self.fail("a quoted path such as \"events.jsonl\""),
        };
        self.pos += 1;
        Ok(text)
    }

    /// A duration: a number and a unit (`500ms`, `5s`, `10min`, `1h`).
    pub(crate) fn duration(&mut self) -> Result<i64, ScriptError> {
        let at = self.at();
        let number = match self.peek().map(|t| &t.token) {
            Some(Token::Number(n, _)) => n.clone(),
            _ => return self.fail("a duration such as 500ms, 5s, 10min or 1h"),
        };
        self.pos += 1;
        let unit = match self.peek().map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style.is_none() => w.value.clone(),
            _ => return self.fail("a unit after the number (us, ms, s, min, h or d)"),
        };
        let scale = unit_scale(&unit).ok_or_else(|| ScriptError {
            hint: Some("units are us, ms, s, min, h and d".into()),
            ..error(
                self.file,
                self.at(),
                format!("`{unit}` is not a unit of time"),
            )
        })?;
        self.pos += 1;
        number
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|d| *d > 0)
            .ok_or_else(|| {
                error(
                    self.file,
                    at,
                    format!("`{number}{unit}` is not a positive whole duration that fits in 64 bits of microseconds"),
                )
            })
    }

    pub(crate) fn done(&self) -> Result<(), ScriptError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("`;`"),
        }
    }
}

fn statement(
    file: &str,
    tokens: Vec<TokenWithSpan>,
    end: Location,
) -> Result<Statement, ScriptError> {
    let at = tokens[0].span.start;
    let mut c = Cursor {
        file,
        tokens,
        pos: 0,
        end,
    };
    if c.keyword("OUTPUT") {
        let name = c.ident("the name of the stream to output")?;
        c.expect_keyword("TO")?;
        let path = if c.keyword("DISCARD") {
            None
        } else if c.peek().is_some_and(|t| {
            matches!(&t.token, Token::Word(w) if w.quote_style == Some('"'))
                || matches!(t.token, Token::SingleQuotedString(_))
        }) {
            Some(c.path()?)
        } else {
            return c.fail("a quoted path such as \"out.jsonl\", or DISCARD");
        };
        let interval = if c.keyword("WITH") {
            c.expect_keyword("INTERVAL")?;
            true
        } else {
            false
        };
        c.done()?;
        return Ok(Statement::Output(Output {
            name,
            path,
            interval,
            at,
        }));
    }
    if c.keyword("SET") {
        c.expect_keyword("PARALLELISM")?;
        let n = parallelism(&mut c)?;
        c.done()?;
        return Ok(Statement::Parallelism(n, at));
    }
    let name =
        c.ident("a statement: `Name = INPUT ...`, `Name = SELECT ...` or `OUTPUT Name TO ...`")?;
    c.expect(Token::Eq)?;
    if c.keyword("INPUT") {
        return input(c, name, at).map(Statement::Input);
    }
    if c.keyword("COMPONENT") {
        return component::component(c, name, at).map(Statement::Component);
    }
    if c.keyword("PROCESS") {
        return component::process(c, name, at, false).map(Statement::Process);
    }
    if c.keyword("REDUCE") {
        return component::process(c, name, at, true).map(Statement::Process);
    }
    let starts_query = matches!(
        c.peek().map(|t| &t.token),
        Some(Token::Word(w)) if w.quote_style.is_none()
            && (w.value.eq_ignore_ascii_case("SELECT") || w.value.eq_ignore_ascii_case("WITH"))
    ) || matches!(c.peek().map(|t| &t.token), Some(Token::LParen));
    if !starts_query {
        return c.fail(&format!(
            "`INPUT`, `SELECT`, `PROCESS`, `REDUCE` or `COMPONENT` after `{name} =`"
        ));
    }
    select(c, name, at).map(Statement::Select)
}

fn input(mut c: Cursor<'_>, name: String, at: Location) -> Result<Input, ScriptError> {
    if c.keyword("NEXMARK") {
        return nexmark::input(c, name, at);
    }
    let path = c.path()?;
    c.expect_keyword("SCHEMA")?;
    c.expect(Token::LParen)?;
    let mut columns = Vec::new();
    loop {
        let column_at = c.at();
        let column = c.ident("a column name")?;
        let type_at = c.at();
        let ty_name = c.ident("a column type (long, string, double or bool)")?;
        let Some(ty) = column_type(&ty_name) else {
            return Err(ScriptError {
                hint: Some(
                    "types are long, string, double and bool, or bigint, varchar, float and boolean"
                        .into(),
                ),
                ..error(c.file, type_at, format!("`{ty_name}` is not a column type"))
            });
        };
        // `long?` or `long NULL`: the column may be null.
        let nullable = if c
            .peek()
            .is_some_and(|t| matches!(&t.token, Token::Placeholder(p) if p == "?"))
        {
            c.pos += 1;
            true
        } else {
            c.keyword("NULL")
        };
        if columns
            .iter()
            .any(|f: &Field| f.name.eq_ignore_ascii_case(&column))
        {
            return Err(error(
                c.file,
                column_at,
                format!("column `{column}` appears twice in the schema of `{name}`"),
            ));
        }
        columns.push(Field {
            name: column,
            ty,
            nullable,
        });
        if c.peek().is_some_and(|t| t.token == Token::Comma) {
            c.pos += 1;
            continue;
        }
        c.expect(Token::RParen)?;
        break;
    }
    let (mut event_time, mut end_time, mut lifetime) = (None, None, None);
    let mut time_scale = 1;
    loop {
        if c.keyword("EVENTTIME") {
            event_time = Some(time_column(&mut c, &columns, &name)?);
            // An optional unit of the time columns: `EVENTTIME ts ms`.
            if let Some(Token::Word(w)) = c.peek().map(|t| &t.token)
                && w.quote_style.is_none()
                && let Some(scale) = unit_scale(&w.value)
            {
                time_scale = scale;
                c.pos += 1;
            }
        } else if c.keyword("ENDTIME") {
            end_time = Some(time_column(&mut c, &columns, &name)?);
        } else if c.keyword("LIFETIME") {
            lifetime = Some(c.duration()?);
        } else {
            break;
        }
    }
    let Some(event_time) = event_time else {
        return c.fail("`EVENTTIME column` (which column events start at)");
    };
    if end_time.is_some() && lifetime.is_some() {
        return Err(error(
            c.file,
            at,
            format!("`{name}` has both ENDTIME and LIFETIME; give one"),
        ));
    }
    c.done()?;
    Ok(Input {
        name,
        path,
        columns,
        event_time,
        end_time,
        time_scale,
        lifetime,
        nexmark: None,
        at,
    })
}

/// A `long`, not-null column of stream `name` named at the cursor (an
/// `EVENTTIME` or `ENDTIME`).
pub(crate) fn time_column(
    c: &mut Cursor<'_>,
    columns: &[Field],
    name: &str,
) -> Result<String, ScriptError> {
    let col_at = c.at();
    let col = c.ident("a time column")?;
    match columns.iter().find(|f| f.name.eq_ignore_ascii_case(&col)) {
        Some(f) if f.ty == ColumnType::Int64 && !f.nullable => Ok(f.name.clone()),
        Some(_) => Err(error(
            c.file,
            col_at,
            format!("time column `{col}` must be a long (not null)"),
        )),
        None => Err(ScriptError {
            hint: hint_near(&col, columns.iter().map(|f| f.name.as_str())),
            ..error(
                c.file,
                col_at,
                format!("`{col}` is not a column of `{name}`"),
            )
        }),
    }
}

fn hint_near<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let near = crate::error::near(name, known);
    (!near.is_empty()).then(|| format!("did you mean `{}`?", near.join("`, `")))
}

/// The column type of a script type name.
fn column_type(name: &str) -> Option<ColumnType> {
    Some(match name.to_ascii_lowercase().as_str() {
        "long" | "bigint" | "int" | "integer" | "smallint" | "tinyint" => ColumnType::Int64,
        "string" | "varchar" | "text" | "char" => ColumnType::Utf8,
        "double" | "float" | "real" => ColumnType::Float64,
        "bool" | "boolean" => ColumnType::Boolean,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERTS: &str = r#"Process = INPUT "process.jsonl" SCHEMA (ProcessID long, UserID string, ts long) EVENTTIME ts LIFETIME 1h;
Alert   = INPUT "alert.jsonl"   SCHEMA (Name string, ProcessID long, ts long) EVENTTIME ts;
AlertWithUserID =
    SELECT Alert.Name AS Name, Process.UserID AS UserID
    FROM Process INNER JOIN Alert
    ON Process.ProcessID == Alert.ProcessID;
CountAlerts =
    SELECT UserID, COUNT(*) AS AlertCount
    FROM AlertWithUserID
    WITH HOPPING(5s, 5s);
OUTPUT CountAlerts TO "counts.jsonl" WITH INTERVAL;
"#;

    fn fails(text: &str) -> String {
        parse("t.wsql", text).expect_err("refused").to_string()
    }

    #[test]
    fn the_papers_script_parses() {
        let s = parse("alerts.wsql", ALERTS).expect("parses");
        assert_eq!(s.len(), 5);
        let Statement::Input(process) = &s[0] else {
            panic!("an input: {:?}", s[0]);
        };
        assert_eq!(process.path, "process.jsonl");
        assert_eq!(process.lifetime, Some(3_600_000_000));
        assert_eq!(process.event_time, "ts");
        assert_eq!(
            process.columns.iter().map(|f| f.ty).collect::<Vec<_>>(),
            [ColumnType::Int64, ColumnType::Utf8, ColumnType::Int64]
        );
        let Statement::Select(join) = &s[2] else {
            panic!("a select");
        };
        assert!(join.window.is_none());
        assert!(
            join.query
                .to_string()
                .contains("Process.ProcessID = Alert.ProcessID"),
            "`==` is equality: {}",
            join.query
        );
        let Statement::Select(count) = &s[3] else {
            panic!("a select");
        };
        let w = count.window.expect("a window");
        assert_eq!((w.hopping.size(), w.hopping.hop()), (5_000_000, 5_000_000));
        assert_eq!((w.at.line, w.at.column), (10, 5));
        assert!(!count.query.to_string().contains("HOPPING"));
        let Statement::Output(out) = &s[4] else {
            panic!("an output");
        };
        assert_eq!((out.name.as_str(), out.interval), ("CountAlerts", true));
    }

    #[test]
    fn windows_and_units_take_their_forms() {
        let s = parse(
            "t.wsql",
            "A = INPUT 'a.jsonl' SCHEMA (t bigint, v double?) EVENTTIME t ms;\n\
             B = SELECT COUNT(*) AS n FROM A WHERE v > 1 GROUP BY v WITH TUMBLING(500ms);",
        )
        .expect("parses");
        let Statement::Input(a) = &s[0] else {
            panic!("an input");
        };
        assert_eq!(a.time_scale, 1_000);
        assert!(a.columns[1].nullable);
        let Statement::Select(b) = &s[1] else {
            panic!("a select");
        };
        assert_eq!(b.window.expect("window").hopping.size(), 500_000);
    }

    #[test]
    fn lifetime_clauses_change_a_querys_output() {
        let s = parse(
            "t.wsql",
            "A = INPUT 'a' SCHEMA (t long) EVENTTIME t;\n\
             B = SELECT t FROM A WITH SHIFT -5s;\n\
             C = SELECT COUNT(*) AS n FROM A WITH TUMBLING(1s) WITH POINT;",
        )
        .expect("parses");
        let (Statement::Select(b), Statement::Select(c)) = (&s[1], &s[2]) else {
            panic!("selects");
        };
        assert_eq!(b.lifetime.map(|l| l.0), Some(Lifetime::Shift(-5_000_000)));
        assert_eq!(c.lifetime.map(|l| l.0), Some(Lifetime::Point));
        assert!(c.window.is_some());
    }

    #[test]
    fn bad_scripts_say_where_and_what() {
        assert_eq!(
            fails("A = INPUT \"a\" SCHEMA (t long) EVENTTIME t;\nB = SELEC * FROM A;"),
            "t.wsql:2:5: expected `INPUT`, `SELECT`, `PROCESS`, `REDUCE` or `COMPONENT` after `B =`, found `SELEC`"
        );
        assert_eq!(
            fails("A = INPUT \"a\" SCHEMA (t long, x numbr) EVENTTIME t;"),
            "t.wsql:1:33: `numbr` is not a column type (types are long, string, double and bool, or bigint, varchar, float and boolean)"
        );
        assert_eq!(
            fails("A = INPUT \"a\" SCHEMA (ts long) EVENTTIME tss;"),
            "t.wsql:1:42: `tss` is not a column of `A` (did you mean `ts`?)"
        );
        assert_eq!(
            fails("A = INPUT \"a\" SCHEMA (ts long);"),
            "t.wsql:1:31: expected `EVENTTIME column` (which column events start at), found `;`"
        );
        assert_eq!(
            fails(
                "A = INPUT \"a\" SCHEMA (ts long) EVENTTIME ts;\nB = SELECT ts FROM A WITH HOPPING(5s, 10s);"
            ),
            "t.wsql:2:22: window size 5000000 µs and hop 10000000 µs: the hop must not be larger than the size (events between windows would be in none)"
        );
        assert_eq!(
            fails("A = INPUT \"a\" SCHEMA (ts long) EVENTTIME ts LIFETIME 5 parsecs;"),
            "t.wsql:1:56: `parsecs` is not a unit of time (units are us, ms, s, min, h and d)"
        );
        assert_eq!(
            fails("A = INPUT \"a\" SCHEMA (ts long) EVENTTIME ts;\nB = SELECT ts FROM A WHERE;"),
            "t.wsql:2:27: Expected: an expression, found: `;`"
        );
        assert_eq!(
            fails("A = INPUT \"a\" SCHEMA (ts long) EVENTTIME ts;\nA = SELECT ts FROM A;"),
            "t.wsql:2:1: `A` is already defined at line 1; each stream is defined once"
        );
        assert_eq!(
            fails("A__1 = INPUT \"a\" SCHEMA (ts long) EVENTTIME ts;"),
            "t.wsql:1:1: `A__1`: a stream's name may not contain `__` (the stages a script compiles to are named that way)"
        );
        assert_eq!(
            fails("OUTPUT A TO \"x\""),
            "t.wsql:1:1: this statement has no `;` at its end"
        );
    }
}
