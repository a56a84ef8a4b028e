//! `weir udf test`: a UDF's component run over a sample file as a stage of a
//! job runs it (the same rVertex, CTIs and end of input included), its output
//! printed and, with `--expect`, compared with an expected file.
//!
//! The sample file is JSON Lines. A row is an object with the columns the UDF
//! reads (other fields are left out), `_start` (its interval's start, an
//! integer) and optionally `_end` (default `_start + 1`); `{"_cti": T}` is a
//! CTI. The output is in the same form, so one stage's output is the next
//! one's sample.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use serde_json::Value;

use crate::entry::{END, Entry};
use crate::plan::{ErrorPolicy, ParamValue, ParamValueSpec, Recovery, StageKind, UdfSpec};
use crate::schema::{ColumnType, Field, event_schema, type_name};
use crate::stage::UdfStage;
use crate::udf::{Limits, Udf};
use crate::vertex::{Operator, Resume, Vertex};
use crate::wasm::{Runtime, World};

/// The most rows one batch of a sample holds.
const BATCH_ROWS: usize = 1024;

/// What `weir udf test` was asked.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The UDF crate, built first with `weir udf build`.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The sample: JSON Lines of rows (with `_start`, optionally `_end`) and
    /// CTIs (`{"_cti": T}`).
    #[arg(long)]
    pub input: PathBuf,
    /// Run this component instead of building DIR.
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// A reducer's key column.
    #[arg(long)]
    pub key: Option<String>,
    /// A stage parameter, `NAME=VALUE` (an integer, a float, true/false or
    /// text), as `[stages.params]` would give it; repeat for more.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Compare the output with this file (the same form) and fail, showing
    /// the lines that differ, when they are not the same.
    #[arg(long)]
    pub expect: Option<PathBuf>,
}

/// Runs `weir udf test`.
pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let component = match &args.component {
        Some(c) => c.clone(),
        None => {
            let built = super::udf::build(&args.dir)?;
            match built.as_slice() {
                [(path, _)] => path.clone(),
                _ => bail!(
                    "{} built {} components; name one with --component",
                    args.dir.display(),
                    built.len()
                ),
            }
        }
    };
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let module = runtime.load_file(&component)?;
    let kind = match module.world {
        World::Processor => StageKind::Processor,
        World::Reducer => StageKind::Reducer,
        World::Scalar => StageKind::Scalar,
        World::Aggregate => {
            bail!(
                "{} is a user-defined aggregate: call it in a query's SELECT with a window (see docs/query-language.md)",
                component.display()
            )
        }
    };
    if kind == StageKind::Reducer && args.key.is_none() {
        bail!(
            "{} is a {}: name its key column with --key",
            component.display(),
            module.world_name()
        );
    }
    let params = args
        .params
        .iter()
        .map(|p| param(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = UdfSpec {
        args: Vec::new(),
        kind,
        component: component.clone(),
        params,
        key: args.key.clone(),
        output: None,
        on_trap: ErrorPolicy::DeadLetter,
        limits: Limits::default(),
    };
    let instance = runtime
        .instantiate(&module, "test", &spec.params, spec.limits)
        .map_err(|e| anyhow::anyhow!("{}: {e}", component.display()))?;
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read the sample {}", args.input.display()))?;
    let mut fields = instance.signature().reads.clone();
    if let Some(key) = &args.key
        && !fields.iter().any(|f| f.name == *key)
    {
        fields.push(key_field(key, &text, &args.input)?);
    }
    let schema = event_schema(&fields);
    let stage = UdfStage::new("test", &spec, Box::new(instance), schema.clone())?;
    let entries = parse(&text, &args.input, &fields)?;
    let mut vertex = Vertex::load(
        "test",
        Operator::Udf(Box::new(stage)),
        schema,
        1,
        Recovery::Checkpoint { every: u64::MAX },
        Resume::Fresh(vec![0]),
    )?;
    let mut out = Vec::new();
    for (seq, entry) in entries.into_iter().enumerate() {
        let fx = vertex.on_entry(0, seq as u64, entry)?;
        for (_, entry) in fx.output {
            if let Entry::Batch { batch, .. } = entry {
                crate::sink::write_jsonl(&mut out, &batch, true)?;
            }
        }
        for (_, entry) in fx.dead {
            if let Entry::Batch { batch, .. } = entry {
                let mut lines = Vec::new();
                crate::sink::write_jsonl(&mut lines, &batch, false)?;
                eprint!("dead letter: {}", String::from_utf8_lossy(&lines));
            }
        }
    }
    let out = String::from_utf8(out).context("the output is not UTF-8")?;
    print!("{out}");
    if let Some(expect) = &args.expect {
        let expected = std::fs::read_to_string(expect)
            .with_context(|| format!("cannot read the expected output {}", expect.display()))?;
        compare(&out, &expected, expect)?;
        eprintln!("the output matches {}", expect.display());
    }
    Ok(())
}

/// A `NAME=VALUE` parameter.
fn param(text: &str) -> anyhow::Result<ParamValueSpec> {
    let Some((name, value)) = text.split_once('=') else {
        bail!("--param {text}: expected NAME=VALUE");
    };
    let value = if let Ok(i) = value.parse::<i64>() {
        ParamValue::Int(i)
    } else if let Ok(x) = value.parse::<f64>() {
        ParamValue::Float(x)
    } else if let Ok(b) = value.parse::<bool>() {
        ParamValue::Flag(b)
    } else {
        ParamValue::Text(value.to_string())
    };
    Ok(ParamValueSpec {
        name: name.to_string(),
        value,
    })
}

/// The key column, when the UDF does not read it: typed by the first row
/// that has it (a string is utf8, an integer int64).
fn key_field(key: &str, text: &str, file: &Path) -> anyhow::Result<Field> {
    for (n, line) in text.lines().enumerate() {
        let Ok(Value::Object(row)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let ty = match row.get(key) {
            Some(Value::String(_)) => ColumnType::Utf8,
            Some(Value::Number(x)) if x.is_i64() => ColumnType::Int64,
            Some(other) => bail!(
                "{}:{}: key column `{key}` holds {other}; a key is a string or an integer",
                file.display(),
                n + 1
            ),
            None => continue,
        };
        return Ok(Field {
            name: key.to_string(),
            ty,
            nullable: false,
        });
    }
    bail!("{}: no row has the key column `{key}`", file.display())
}

/// The sample's entries: batches of the rows between CTIs, the CTIs, and
/// the end of input.
fn parse(text: &str, file: &Path, fields: &[Field]) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut rows: Vec<(usize, serde_json::Map<String, Value>)> = Vec::new();
    let mut cti: Option<(i64, usize)> = None;
    let flush = |rows: &mut Vec<(usize, serde_json::Map<String, Value>)>,
                 entries: &mut Vec<Entry>|
     -> anyhow::Result<()> {
        if !rows.is_empty() {
            entries.push(Entry::Batch {
                producer: "sample".into(),
                batch: batch(rows, file, fields)?,
            });
            rows.clear();
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |what: String| anyhow::anyhow!("{}:{line_no}: {what}", file.display());
        let row = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(row)) => row,
            Ok(_) => return Err(at("expected a JSON object".into())),
            Err(e) => return Err(at(format!("not JSON: {e}"))),
        };
        if let Some(t) = row.get("_cti") {
            let t = t
                .as_i64()
                .ok_or_else(|| at(format!("`_cti` must be an integer, not {t}")))?;
            if let Some((last, line)) = cti
                && t <= last
            {
                return Err(at(format!(
                    "CTI {t} does not advance past CTI {last} (line {line})"
                )));
            }
            flush(&mut rows, &mut entries)?;
            entries.push(Entry::Cti(t));
            cti = Some((t, line_no));
            continue;
        }
        let start = row
            .get("_start")
            .and_then(Value::as_i64)
            .ok_or_else(|| at("a row needs `_start`, an integer (its interval's start)".into()))?;
        if let Some((last, line)) = cti
            && start < last
        {
            return Err(at(format!(
                "the row starts at {start}, before CTI {last} (line {line}), which promised no such row"
            )));
        }
        rows.push((line_no, row));
        if rows.len() == BATCH_ROWS {
            flush(&mut rows, &mut entries)?;
        }
    }
    flush(&mut rows, &mut entries)?;
    if cti.map(|(t, _)| t) != Some(END) {
        entries.push(Entry::Cti(END));
    }
    Ok(entries)
}

/// One batch of sample rows, typed by `fields`.
fn batch(
    rows: &[(usize, serde_json::Map<String, Value>)],
    file: &Path,
    fields: &[Field],
) -> anyhow::Result<RecordBatch> {
    let at = |line: usize, what: String| anyhow::anyhow!("{}:{line}: {what}", file.display());
    let mut start = Int64Builder::with_capacity(rows.len());
    let mut end = Int64Builder::with_capacity(rows.len());
    for (line, row) in rows {
        let s = row
            .get("_start")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let e = match row.get("_end") {
            None => s.saturating_add(1),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| at(*line, format!("`_end` must be an integer, not {v}")))?,
        };
        if e <= s {
            return Err(at(*line, format!("the interval [{s}, {e}) is empty")));
        }
        start.append_value(s);
        end.append_value(e);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(start.finish()), Arc::new(end.finish())];
    for field in fields {
        let value =
            |line: usize, row: &serde_json::Map<String, Value>| -> anyhow::Result<Option<Value>> {
                match row.get(&field.name) {
                    None | Some(Value::Null) if field.nullable => Ok(None),
                    None | Some(Value::Null) => Err(at(
                        line,
                        format!(
                            "column `{}` ({}) is missing or null",
                            field.name,
                            type_name(field.ty)
                        ),
                    )),
                    Some(v) => Ok(Some(v.clone())),
                }
            };
        let wrong = |line: usize, v: &Value| {
            at(
                line,
                format!(
                    "column `{}` is {}, not {v}",
                    field.name,
                    type_name(field.ty)
                ),
            )
        };
        let column: ArrayRef = match field.ty {
            ColumnType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for (line, row) in rows {
                    match value(*line, row)? {
                        None => b.append_null(),
                        Some(v) => b.append_value(v.as_i64().ok_or_else(|| wrong(*line, &v))?),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Float64 => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for (line, row) in rows {
                    match value(*line, row)? {
                        None => b.append_null(),
                        Some(v) => b.append_value(v.as_f64().ok_or_else(|| wrong(*line, &v))?),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for (line, row) in rows {
                    match value(*line, row)? {
                        None => b.append_null(),
                        Some(v) => b.append_value(v.as_bool().ok_or_else(|| wrong(*line, &v))?),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Utf8 => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                for (line, row) in rows {
                    match value(*line, row)? {
                        None => b.append_null(),
                        Some(v) => b.append_value(v.as_str().ok_or_else(|| wrong(*line, &v))?),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(event_schema(fields), columns)?)
}

/// Fails, showing the lines that differ, when `out` is not `expected`.
fn compare(out: &str, expected: &str, file: &Path) -> anyhow::Result<()> {
    let (got, want): (Vec<&str>, Vec<&str>) = (out.lines().collect(), expected.lines().collect());
    if got == want {
        return Ok(());
    }
    let mut shown = 0;
    let mut differ = 0;
    for i in 0..got.len().max(want.len()) {
        let (g, w) = (got.get(i), want.get(i));
        if g == w {
            continue;
        }
        differ += 1;
        if shown < 20 {
            if let Some(w) = w {
                eprintln!("line {}: - {w}", i + 1);
            }
            if let Some(g) = g {
                eprintln!("line {}: + {g}", i + 1);
            }
            shown += 1;
        }
    }
    bail!(
        "the output differs from {} at {differ} of {} lines (- expected, + output); it has {} lines, the file {}",
        file.display(),
        got.len().max(want.len()),
        got.len(),
        want.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<Field> {
        vec![
            crate::schema::field("user", ColumnType::Utf8, false),
            crate::schema::field("n", ColumnType::Int64, true),
        ]
    }

    /// Rows between CTIs make batches, end of input is added, and bad lines
    /// are refused naming file, line and what is wrong.
    #[test]
    fn samples_parse_into_batches_and_ctis_and_bad_lines_are_named() {
        let file = Path::new("s.jsonl");
        let text = "{\"_start\": 1, \"user\": \"a\", \"n\": 2, \"extra\": true}\n{\"_start\": 3, \"_end\": 9, \"user\": \"b\"}\n\n{\"_cti\": 5}\n{\"_start\": 5, \"user\": \"c\", \"n\": null}\n";
        let entries = parse(text, file, &fields()).expect("parses");
        let shape: Vec<String> = entries
            .iter()
            .map(|e| match e {
                Entry::Batch { batch, .. } => format!("{} rows", batch.num_rows()),
                Entry::Cti(t) => format!("cti {t}"),
            })
            .collect();
        assert_eq!(shape, ["2 rows", "cti 5", "1 rows", &format!("cti {END}")]);
        let err = |text: &str| {
            parse(text, file, &fields())
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            err("{\"_cti\": 5}\n{\"_start\": 4, \"user\": \"a\"}"),
            "s.jsonl:2: the row starts at 4, before CTI 5 (line 1), which promised no such row"
        );
        assert_eq!(
            err("{\"_start\": 4, \"user\": 7}"),
            "s.jsonl:1: column `user` is utf8, not 7"
        );
        assert_eq!(
            err("{\"_start\": 4}"),
            "s.jsonl:1: column `user` (utf8) is missing or null"
        );
        assert_eq!(
            err("{\"user\": \"a\"}"),
            "s.jsonl:1: a row needs `_start`, an integer (its interval's start)"
        );
        assert_eq!(
            err("{\"_cti\": 5}\n{\"_cti\": 5}"),
            "s.jsonl:2: CTI 5 does not advance past CTI 5 (line 1)"
        );
        assert_eq!(
            err("{\"_start\": 4, \"_end\": 4, \"user\": \"a\"}"),
            "s.jsonl:1: the interval [4, 4) is empty"
        );
        assert!(err("[1]").starts_with("s.jsonl:1: expected a JSON object"));
    }

    #[test]
    fn parameters_take_the_type_their_text_reads_as() {
        let values: Vec<ParamValue> = ["a=3", "b=0.5", "c=true", "d=eu-west"]
            .iter()
            .map(|p| param(p).expect("parameter").value)
            .collect();
        assert_eq!(
            values,
            [
                ParamValue::Int(3),
                ParamValue::Float(0.5),
                ParamValue::Flag(true),
                ParamValue::Text("eu-west".into())
            ]
        );
        assert!(param("nothing").is_err());
    }
}
