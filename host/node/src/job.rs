//! Job files (TOML) and their compilation to a [`Plan`].
//!
//! ```toml
//! name = "click-fraud"
//! batch_size = 1024                    # optional
//! dead_letter = "out/dead.jsonl"       # optional
//!
//! [[sources]]
//! name = "clicks"
//! format = "jsonl"                     # or "csv"
//! path = "data/clicks.jsonl"           # relative to the job file
//! event_time = "ts"                    # int64 microseconds, or { column = "ts", unit = "ms" }
//! on_error = "fail"                    # or "dead-letter"
//! schema = { ts = "int64", user = "utf8", price = "float64?" }
//!
//! [[stages]]
//! name = "humans"
//! input = "clicks"
//! kind = "processor"                   # processor | reducer | scalar
//! component = "bot_filter.wasm"
//! params = { blocked_prefix = "10.66." }
//! on_trap = "dead-letter"              # or "fail", or "rollback" (on a node:
//!                                       # back to the previous module version)
//!
//! [[sinks]]
//! input = "humans"
//! path = "out/humans.jsonl"            # or: stdout = true
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::plan::{
    CtiPolicy, ErrorPolicy, Operator, ParamValue, ParamValueSpec, Plan, Recovery, SinkSpec,
    SinkTarget, SourceFormat, SourceOrigin, SourceSpec, StageKind, StageSpec, TimeUnit, UdfSpec,
};
use crate::schema::{ColumnType, Field, parse_type, type_name};
use crate::wasm::Limits;

mod stage;
use stage::{policy, stage};

/// A job file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file could not be read.
    #[error("cannot read job file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong shape.
    #[error("job file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A query script that does not compile (the error names file, line
    /// and column).
    #[error(transparent)]
    Script(#[from] weir_sql::ScriptError),
    /// Valid TOML that does not describe a runnable job.
    #[error("job file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: Option<String>,
    batch_size: Option<usize>,
    dead_letter: Option<PathBuf>,
    #[serde(default)]
    sources: Vec<SourceFile>,
    #[serde(default)]
    stages: Vec<StageFile>,
    #[serde(default)]
    sinks: Vec<SinkFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    name: String,
    format: Option<String>,
    path: Option<PathBuf>,
    stream: Option<String>,
    #[serde(default)]
    follow: bool,
    event_time: Option<TimeColumn>,
    end_time: Option<TimeColumn>,
    on_error: Option<String>,
    schema: Option<toml::Table>,
    cti_lag_us: Option<i64>,
    cti_every: Option<u64>,
    #[serde(default)]
    strict: bool,
}

/// A time column: its name (values in microseconds), or
/// `{ column = "ts", unit = "ms" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeColumn {
    Name(String),
    With(TimeColumnWith),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeColumnWith {
    column: String,
    unit: Option<String>,
}

impl TimeColumn {
    /// The column and its unit, or what is wrong with the unit.
    fn parse(&self, at: &str, key: &str) -> Result<(String, TimeUnit), String> {
        match self {
            TimeColumn::Name(name) => Ok((name.clone(), TimeUnit::Micros)),
            TimeColumn::With(w) => {
                let unit = match w.unit.as_deref() {
                    None => TimeUnit::Micros,
                    Some(text) => TimeUnit::parse(text).ok_or_else(|| {
                        format!("{at}: {key} unit `{text}`: use `us`, `ms` or `s`")
                    })?,
                };
                Ok((w.column.clone(), unit))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    name: String,
    input: Option<String>,
    #[serde(default)]
    inputs: Vec<String>,
    kind: String,
    component: Option<PathBuf>,
    recovery: Option<String>,
    checkpoint_every: Option<u64>,
    replay_window: Option<u64>,
    replicate: Option<usize>,
    #[serde(default)]
    params: toml::Table,
    key: Option<String>,
    output: Option<String>,
    on_trap: Option<String>,
    fuel_per_row: Option<u64>,
    memory_mib: Option<usize>,
    deadline_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkFile {
    input: String,
    path: Option<PathBuf>,
    #[serde(default)]
    stdout: bool,
    #[serde(default)]
    discard: bool,
    #[serde(default)]
    interval: bool,
    columns: Option<Vec<String>>,
}

/// Reads and compiles a job file. Relative paths in it are relative to its directory.
pub fn load(path: &Path) -> Result<Plan, JobError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Compiles job-file text; `path` names it in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Plan, JobError> {
    parse_with(
        path,
        text,
        true,
        &crate::components::WasmComponents::files(),
        1,
    )
}

/// Reads and compiles a job file or script whose keyed stages run as
/// `parallelism` rVertices unless the script sets its own (job files: 1).
pub fn load_with(path: &Path, parallelism: usize) -> Result<Plan, JobError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_with(
        path,
        &text,
        true,
        &crate::components::WasmComponents::files(),
        parallelism,
    )
}

/// Compiles job-file text; `check_files` says whether component files must
/// exist here (a node runs the components shipped with the job instead,
/// which `components` finds for a script).
pub fn parse_with(
    path: &Path,
    text: &str,
    check_files: bool,
    components: &dyn weir_sql::Components,
    parallelism: usize,
) -> Result<Plan, JobError> {
    // A query script compiles to the same kind of plan; on a node
    // (`check_files` false) its inputs are the node's streams.
    if path.extension().is_some_and(|e| e == "wsql") {
        let inputs = if check_files {
            weir_sql::Inputs::Files
        } else {
            weir_sql::Inputs::Streams
        };
        return Ok(weir_sql::compile_with(
            path,
            text,
            inputs,
            components,
            parallelism,
        )?);
    }
    if parallelism > 1 {
        return Err(JobError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "parallelism {parallelism}: a job file's stages run as one vertex each; parallel stages come from query scripts (`.wsql`)"
            ),
        });
    }
    let file: JobFile = toml::from_str(text).map_err(|e| JobError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let invalid = |message: String| JobError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job".into())
    });

    let mut streams: HashSet<String> = HashSet::new();
    let mut sources = Vec::new();
    for (i, s) in file.sources.iter().enumerate() {
        let at = format!("sources[{i}] `{}`", s.name);
        if !streams.insert(s.name.clone()) {
            return Err(invalid(format!("{at}: the stream name is already used")));
        }
        let origin = match (&s.path, &s.stream) {
            (Some(_), None) => SourceOrigin::File { follow: s.follow },
            (None, Some(stream)) if !s.follow => SourceOrigin::Stream(stream.clone()),
            (None, Some(_)) => {
                return Err(invalid(format!(
                    "{at}: `follow` applies to file sources; a stream source always follows its stream"
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "{at}: give exactly one of `path` (a file) or `stream` (a node's ingest stream)"
                )));
            }
        };
        let format = match s.format.as_deref() {
            None => match s
                .path
                .as_deref()
                .and_then(|p| p.extension())
                .and_then(|e| e.to_str())
            {
                Some("csv") => SourceFormat::Csv,
                _ => SourceFormat::Jsonl,
            },
            Some("jsonl") | Some("json") => SourceFormat::Jsonl,
            Some("csv") => SourceFormat::Csv,
            Some(other) => {
                return Err(invalid(format!(
                    "{at}: unknown format `{other}` (expected `jsonl` or `csv`)"
                )));
            }
        };
        let cti = match (s.cti_lag_us, s.cti_every) {
            (None, None) => CtiPolicy::default(),
            (Some(lag), None) if lag >= 0 => CtiPolicy::Lag(lag),
            (None, Some(n)) if n > 0 => CtiPolicy::Every(n),
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "{at}: give at most one of `cti_lag_us` and `cti_every`"
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "{at}: `cti_lag_us` must be at least 0 and `cti_every` at least 1"
                )));
            }
        };
        let mut fields = Vec::new();
        if let SourceOrigin::Stream(stream) = &origin {
            // The stream's catalog entry gives columns and time columns.
            if s.schema.is_some() || s.event_time.is_some() || s.end_time.is_some() || s.strict {
                return Err(invalid(format!(
                    "{at}: stream `{stream}` brings its own columns and time, checked at ingest; remove `schema`, `event_time`, `end_time` and `strict`"
                )));
            }
            sources.push(SourceSpec {
                name: s.name.clone(),
                origin,
                format,
                path: PathBuf::new(),
                fields,
                event_time: String::new(),
                event_unit: TimeUnit::Micros,
                end_time: None,
                end_unit: TimeUnit::Micros,
                on_error: policy(s.on_error.as_deref(), &at, "on_error").map_err(invalid)?,
                cti,
                strict: s.strict,
            });
            continue;
        }
        let Some(schema) = &s.schema else {
            return Err(invalid(format!("{at}: a file source needs a `schema`")));
        };
        let Some(event_time) = &s.event_time else {
            return Err(invalid(format!(
                "{at}: a file source needs `event_time` (an int64 column, microseconds, or `{{ column = \"ts\", unit = \"ms\" }}`)"
            )));
        };
        let (event_time, event_unit) = event_time.parse(&at, "event_time").map_err(invalid)?;
        let (end_time, end_unit) = match &s.end_time {
            None => (None, TimeUnit::Micros),
            Some(t) => {
                let (column, unit) = t.parse(&at, "end_time").map_err(invalid)?;
                (Some(column), unit)
            }
        };
        for (col, ty) in schema {
            let text = ty.as_str().ok_or_else(|| {
                invalid(format!(
                    "{at}: schema column `{col}` must be a type name string"
                ))
            })?;
            let (ty, nullable) = parse_type(text).ok_or_else(|| {
                invalid(format!(
                    "{at}: schema column `{col}` has unknown type `{text}` (expected int64, float64, boolean or utf8, with `?` for nullable)"
                ))
            })?;
            fields.push(Field {
                name: col.clone(),
                ty,
                nullable,
            });
        }
        if fields.is_empty() {
            return Err(invalid(format!("{at}: the schema declares no columns")));
        }
        for time_col in std::iter::once(&event_time).chain(end_time.as_ref()) {
            match fields.iter().find(|f| &f.name == time_col) {
                Some(f) if f.ty == ColumnType::Int64 && !f.nullable => {}
                Some(f) => {
                    return Err(invalid(format!(
                        "{at}: time column `{time_col}` must be a non-null int64, it is {}{}",
                        type_name(f.ty),
                        if f.nullable { "?" } else { "" }
                    )));
                }
                None => {
                    return Err(invalid(format!(
                        "{at}: time column `{time_col}` is not in the schema"
                    )));
                }
            }
        }
        sources.push(SourceSpec {
            name: s.name.clone(),
            origin,
            format,
            path: s.path.as_deref().map(resolve).unwrap_or_default(),
            fields,
            event_time,
            event_unit,
            end_time,
            end_unit,
            on_error: policy(s.on_error.as_deref(), &at, "on_error").map_err(invalid)?,
            cti,
            strict: s.strict,
        });
    }

    // Stages may be listed in any order; place each after its input.
    let mut pending: Vec<(usize, &StageFile, Vec<String>)> = Vec::new();
    for (i, s) in file.stages.iter().enumerate() {
        let inputs = match (&s.input, s.inputs.is_empty()) {
            (Some(one), true) => vec![one.clone()],
            (None, false) => s.inputs.clone(),
            _ => {
                return Err(invalid(format!(
                    "stages[{i}] `{}`: give exactly one of `input = \"stream\"` or `inputs = [..]`",
                    s.name
                )));
            }
        };
        pending.push((i, s, inputs));
    }
    let mut stages = Vec::new();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for (i, s, inputs) in pending {
            if inputs.iter().all(|input| streams.contains(input)) {
                stages.push(stage(i, s, inputs, &resolve, check_files).map_err(invalid)?);
                if !streams.insert(s.name.clone()) {
                    return Err(invalid(format!(
                        "stages[{i}] `{}`: the stream name is already used",
                        s.name
                    )));
                }
            } else {
                rest.push((i, s, inputs));
            }
        }
        if rest.len() == before {
            let (i, s, inputs) = &rest[0];
            let missing = inputs
                .iter()
                .find(|input| !streams.contains(*input))
                .cloned()
                .unwrap_or_default();
            let known = file.stages.iter().any(|o| o.name == missing);
            return Err(invalid(if known {
                format!(
                    "stages[{i}] `{}`: input `{missing}` is part of a cycle",
                    s.name
                )
            } else {
                format!(
                    "stages[{i}] `{}`: input `{missing}` is not a source or stage (known: {})",
                    s.name,
                    sorted(&streams)
                )
            }));
        }
        pending = rest;
    }

    let mut sinks = Vec::new();
    for (i, s) in file.sinks.iter().enumerate() {
        let at = format!("sinks[{i}]");
        if !streams.contains(&s.input) {
            return Err(invalid(format!(
                "{at}: input `{}` is not a source or stage (known: {})",
                s.input,
                sorted(&streams)
            )));
        }
        let target = match (&s.path, s.stdout, s.discard) {
            (Some(p), false, false) => SinkTarget::File(resolve(p)),
            (None, true, false) => SinkTarget::Stdout,
            (None, false, true) => SinkTarget::Discard,
            _ => {
                return Err(invalid(format!(
                    "{at}: give exactly one of `path`, `stdout = true` or `discard = true`"
                )));
            }
        };
        // The same file however it is spelled (`x.jsonl`, `./x.jsonl`).
        let plain = |t: &SinkTarget| match t {
            SinkTarget::File(p) => Some(
                p.components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect::<PathBuf>(),
            ),
            _ => None,
        };
        if let SinkTarget::File(path) = &target
            && let Some(j) = sinks
                .iter()
                .position(|other: &SinkSpec| plain(&other.target) == plain(&target))
        {
            return Err(invalid(format!(
                "{at}: sinks[{j}] writes {} too; give each sink its own file",
                path.display()
            )));
        }
        if s.columns.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(invalid(format!(
                "{at}: `columns` names no column; leave it out to write them all"
            )));
        }
        sinks.push(SinkSpec {
            input: s.input.clone(),
            target,
            interval: s.interval,
            columns: s.columns.clone(),
            ordered: false,
        });
    }
    if sinks.is_empty() {
        return Err(invalid(
            "the job has no [[sinks]]: its results would go nowhere".into(),
        ));
    }
    let batch_size = file.batch_size.unwrap_or(1024);
    if batch_size == 0 || batch_size > 1 << 20 {
        return Err(invalid(format!(
            "batch_size must be 1..=1048576, got {batch_size}"
        )));
    }
    let dead_letter = file
        .dead_letter
        .as_deref()
        .map(resolve)
        .unwrap_or_else(|| base.join(format!("{name}.dead-letter.jsonl")));
    let components = stages
        .iter()
        .filter_map(|s| match &s.operator {
            Operator::Udf(u) => Some(u.component.clone()),
            _ => None,
        })
        .collect();
    Ok(Plan {
        name,
        batch_size,
        sources,
        stages,
        components,
        sinks,
        dead_letter,
    })
}

fn sorted(set: &HashSet<String>) -> String {
    let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("/tmp/job.toml"), text)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    const SOURCE: &str = r#"
[[sources]]
name = "s"
path = "in.jsonl"
event_time = "ts"
schema = { ts = "int64", user = "utf8" }
"#;

    #[test]
    fn syntax_error_names_line() {
        let e = err("name = \n");
        assert!(e.contains("/tmp/job.toml") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn unknown_input_is_named() {
        let e = err(&format!(
            "{SOURCE}\n[[sinks]]\ninput = \"nope\"\nstdout = true\n"
        ));
        assert!(
            e.contains("input `nope` is not a source or stage (known: s)"),
            "{e}"
        );
    }

    #[test]
    fn bad_schema_type_is_named() {
        let e = err(
            "[[sources]]\nname = \"s\"\npath = \"x\"\nevent_time = \"ts\"\nschema = { ts = \"decimal\" }\n",
        );
        assert!(e.contains("column `ts` has unknown type `decimal`"), "{e}");
    }

    #[test]
    fn missing_component_is_named() {
        let e = err(&format!(
            "{SOURCE}\n[[stages]]\nname = \"f\"\ninput = \"s\"\nkind = \"processor\"\ncomponent = \"missing.wasm\"\n"
        ));
        assert!(
            e.contains("component /tmp/missing.wasm does not exist"),
            "{e}"
        );
    }

    #[test]
    fn a_job_needs_a_sink() {
        assert!(err(SOURCE).contains("no [[sinks]]"));
    }

    #[test]
    fn preserves_schema_order() {
        let plan = parse(
            Path::new("/tmp/job.toml"),
            &format!("{SOURCE}\n[[sinks]]\ninput = \"s\"\nstdout = true\n"),
        )
        .unwrap();
        let names: Vec<_> = plan.sources[0]
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["ts", "user"]);
    }
}
