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
//! event_time = "ts"                    # int64 microseconds
//! on_error = "fail"                    # or "dead-letter"
//! schema = { ts = "int64", user = "utf8", price = "float64?" }
//!
//! [[stages]]
//! name = "humans"
//! input = "clicks"
//! kind = "processor"                   # processor | reducer | scalar
//! component = "bot_filter.wasm"
//! params = { blocked_prefix = "10.66." }
//! on_trap = "dead-letter"              # or "fail"
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
    ErrorPolicy, Operator, ParamValue, ParamValueSpec, Plan, SinkSpec, SinkTarget, SourceFormat,
    SourceSpec, StageKind, StageSpec, UdfSpec,
};
use crate::schema::{ColumnType, Field, parse_type, type_name};
use crate::wasm::Limits;

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
    path: PathBuf,
    event_time: String,
    end_time: Option<String>,
    on_error: Option<String>,
    schema: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    name: String,
    input: String,
    kind: String,
    component: PathBuf,
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
    interval: bool,
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
        let format = match s.format.as_deref() {
            None => match s.path.extension().and_then(|e| e.to_str()) {
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
        let mut fields = Vec::new();
        for (col, ty) in &s.schema {
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
        for time_col in std::iter::once(&s.event_time).chain(s.end_time.as_ref()) {
            match fields.iter().find(|f| &f.name == time_col) {
                Some(f) if f.ty == ColumnType::Int64 && !f.nullable => {}
                Some(f) => {
                    return Err(invalid(format!(
                        "{at}: time column `{time_col}` must be a non-null int64 (microseconds), it is {}{}",
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
            format,
            path: resolve(&s.path),
            fields,
            event_time: s.event_time.clone(),
            end_time: s.end_time.clone(),
            on_error: policy(s.on_error.as_deref(), &at, "on_error").map_err(invalid)?,
        });
    }

    // Stages may be listed in any order; place each after its input.
    let mut pending: Vec<(usize, &StageFile)> = file.stages.iter().enumerate().collect();
    let mut stages = Vec::new();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for (i, s) in pending {
            if streams.contains(&s.input) {
                stages.push(stage(i, s, &resolve).map_err(invalid)?);
                if !streams.insert(s.name.clone()) {
                    return Err(invalid(format!(
                        "stages[{i}] `{}`: the stream name is already used",
                        s.name
                    )));
                }
            } else {
                rest.push((i, s));
            }
        }
        if rest.len() == before {
            let (i, s) = rest[0];
            let known = file.stages.iter().any(|o| o.name == s.input);
            return Err(invalid(if known {
                format!(
                    "stages[{i}] `{}`: input `{}` is part of a cycle",
                    s.name, s.input
                )
            } else {
                format!(
                    "stages[{i}] `{}`: input `{}` is not a source or stage (known: {})",
                    s.name,
                    s.input,
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
        let target = match (&s.path, s.stdout) {
            (Some(p), false) => SinkTarget::File(resolve(p)),
            (None, true) => SinkTarget::Stdout,
            _ => {
                return Err(invalid(format!(
                    "{at}: give exactly one of `path` or `stdout = true`"
                )));
            }
        };
        sinks.push(SinkSpec {
            input: s.input.clone(),
            target,
            interval: s.interval,
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
    Ok(Plan {
        name,
        batch_size,
        sources,
        stages,
        sinks,
        dead_letter,
    })
}

fn sorted(set: &HashSet<String>) -> String {
    let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.join(", ")
}

fn policy(text: Option<&str>, at: &str, key: &str) -> Result<ErrorPolicy, String> {
    match text {
        None | Some("fail") => Ok(ErrorPolicy::Fail),
        Some("dead-letter") | Some("dead_letter") => Ok(ErrorPolicy::DeadLetter),
        Some(other) => Err(format!(
            "{at}: {key} = `{other}`; expected `fail` or `dead-letter`"
        )),
    }
}

fn stage(i: usize, s: &StageFile, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<StageSpec, String> {
    let at = format!("stages[{i}] `{}`", s.name);
    let kind = match s.kind.as_str() {
        "processor" => StageKind::Processor,
        "reducer" => StageKind::Reducer,
        "scalar" => StageKind::Scalar,
        other => {
            return Err(format!(
                "{at}: unknown kind `{other}` (expected processor, reducer or scalar)"
            ));
        }
    };
    if kind == StageKind::Reducer && s.key.is_none() {
        return Err(format!("{at}: a reducer needs `key = \"column\"`"));
    }
    if kind != StageKind::Reducer && s.key.is_some() {
        return Err(format!("{at}: `key` only applies to reducers"));
    }
    let component = resolve(&s.component);
    if !component.exists() {
        return Err(format!(
            "{at}: component {} does not exist (build UDFs with `weir udf build`)",
            component.display()
        ));
    }
    let mut params = Vec::new();
    let table: BTreeMap<_, _> = s.params.iter().collect();
    for (name, value) in table {
        let value = match value {
            toml::Value::Integer(v) => ParamValue::Int(*v),
            toml::Value::Float(v) => ParamValue::Float(*v),
            toml::Value::String(v) => ParamValue::Text(v.clone()),
            toml::Value::Boolean(v) => ParamValue::Flag(*v),
            other => {
                return Err(format!(
                    "{at}: parameter `{name}` is a {}; parameters are integers, floats, strings or booleans",
                    other.type_str()
                ));
            }
        };
        params.push(ParamValueSpec {
            name: name.clone(),
            value,
        });
    }
    let defaults = Limits::default();
    let limits = Limits {
        fuel_per_row: s.fuel_per_row.unwrap_or(defaults.fuel_per_row),
        fuel_per_call: defaults.fuel_per_call,
        memory_bytes: s
            .memory_mib
            .map(|m| m << 20)
            .unwrap_or(defaults.memory_bytes),
        deadline: s
            .deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.deadline),
    };
    if limits.memory_bytes > crate::wasm::MAX_MEMORY_BYTES || limits.memory_bytes < (1 << 20) {
        return Err(format!(
            "{at}: memory_mib must be between 1 and {}",
            crate::wasm::MAX_MEMORY_BYTES >> 20
        ));
    }
    Ok(StageSpec {
        name: s.name.clone(),
        input: s.input.clone(),
        operator: Operator::Udf(UdfSpec {
            kind,
            component,
            params,
            key: s.key.clone(),
            output: s.output.clone(),
            on_trap: policy(s.on_trap.as_deref(), &at, "on_trap")?,
            limits,
        }),
    })
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
