//! File sources: JSONL and CSV with a declared schema, read into Arrow batches.
//!
//! A row is appended to the batch only once every column of it parsed, so a
//! malformed row is never half-written; it fails the job or goes to the
//! dead-letter output, by the source's policy, with file, line and column.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use serde_json::Value as Json;

use crate::plan::{ErrorPolicy, SourceFormat, SourceSpec};
use crate::rstream::Entry;
use crate::schema::{ColumnType, Field, event_schema, type_name};
use crate::vertex::{CtiGen, DeadLetter};

pub(crate) mod nexmark;

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {}{message}", column.as_ref().map(|c| format!("column `{c}`: ")).unwrap_or_default())]
pub struct RowError {
    /// The input file.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// The offending column, when one is to blame.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The raw text of the row.
    pub raw: String,
}

impl RowError {
    /// The row as a dead letter of its source's stream.
    pub fn dead_letter(&self) -> DeadLetter {
        DeadLetter {
            start: 0,
            input_seq: self.line as i64,
            module: "-".into(),
            error: self.to_string(),
            row: self.raw.clone(),
        }
    }
}

/// Errors opening or reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file cannot be opened or read.
    #[error("source `{source_name}`: cannot read {path}: {error}")]
    Io {
        /// Source name.
        source_name: String,
        /// File.
        path: PathBuf,
        /// Cause.
        error: std::io::Error,
    },
    /// The CSV header has a column the schema does not declare (`strict`).
    #[error(
        "source `{source_name}`: {path}:1: the CSV header has column `{column}`, which the schema does not declare (the source is `strict`)"
    )]
    ExtraHeader {
        /// Source name.
        source_name: String,
        /// File.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// The CSV header lacks a declared column.
    #[error(
        "source `{source_name}`: {path}:1: the CSV header has no column `{column}` (header: {header})"
    )]
    MissingHeader {
        /// Source name.
        source_name: String,
        /// File.
        path: PathBuf,
        /// The declared column.
        column: String,
        /// What the header has.
        header: String,
    },
}

/// One batch read from a source, plus the rows rejected while reading it.
#[derive(Debug)]
pub struct Chunk {
    /// The rows that parsed (may be empty).
    pub batch: RecordBatch,
    /// The rows that did not.
    pub rejected: Vec<RowError>,
}

/// A chunk of a file source made into its stream's entries, the same way
/// offline and on a node.
#[derive(Debug)]
pub struct Punctuated {
    /// The on-time batch (when it has rows), then the CTI it makes (if any).
    pub entries: Vec<Entry>,
    /// On-time rows.
    pub rows: u64,
    /// Malformed rows (the source's policy is `dead-letter`).
    pub rejected: Vec<RowError>,
    /// Events that start before a CTI already made.
    pub late: Vec<DeadLetter>,
}

impl Chunk {
    /// Applies `spec`'s policies to the chunk read up to `line`: a malformed
    /// row under `fail` is the error; on-time events become a batch entry
    /// followed by the CTI `cti` makes of them.
    pub fn punctuate(
        self,
        spec: &SourceSpec,
        cti: &mut CtiGen,
        line: u64,
    ) -> Result<Punctuated, Box<RowError>> {
        if let Some(first) = self.rejected.first()
            && spec.on_error == ErrorPolicy::Fail
        {
            return Err(Box::new(first.clone()));
        }
        let (on_time, late, t) = cti.on_batch(&self.batch, &spec.name, line as i64);
        let rows = on_time.num_rows() as u64;
        let mut entries = Vec::with_capacity(2);
        if rows > 0 {
            entries.push(Entry::Batch {
                producer: format!("source `{}`", spec.name),
                batch: on_time,
            });
        }
        entries.extend(t.map(Entry::Cti));
        Ok(Punctuated {
            entries,
            rows,
            rejected: self.rejected,
            late,
        })
    }
}

/// How many bytes at the start of `buf` are whole rows of `format`: whole
/// lines, and for CSV never a cut inside a quoted field spanning lines.
/// `buf` starts at a row boundary.
pub fn whole_rows(format: SourceFormat, buf: &[u8]) -> usize {
    match format {
        SourceFormat::Jsonl => buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1),
        SourceFormat::Csv => {
            let mut quoted = false;
            let mut end = 0;
            for (i, b) in buf.iter().enumerate() {
                match b {
                    b'"' => quoted = !quoted,
                    b'\n' if !quoted => end = i + 1,
                    _ => {}
                }
            }
            end
        }
    }
}

/// The first line of a CSV file, its header, with its newline; `None` until
/// the file holds a whole line.
pub fn csv_header(path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    BufReader::new(File::open(path)?).read_until(b'\n', &mut line)?;
    Ok(line.ends_with(b"\n").then_some(line))
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

/// One parsed cell, staged until the whole row has parsed.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// What a source reads: a file, or bytes received over the network.
type Input = Box<dyn std::io::Read + Send>;

/// A batch holds at most this many bytes of input text, whatever its row
/// count: Arrow's string offsets are 32-bit, and a batch is one value in
/// storage and on the wire.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

enum Lines {
    Jsonl(BufReader<Input>),
    Nexmark(nexmark::Generated),
    Csv {
        reader: csv::Reader<Tap>,
        record: csv::StringRecord,
        /// The bytes the CSV reader has read and the rows not yet taken.
        seen: Arc<std::sync::Mutex<Seen>>,
        /// Fields the header has.
        width: usize,
        positions: Vec<usize>,
    },
}

/// The input bytes a CSV reader has consumed from `base` on: a row's raw
/// text is cut from here by its byte offsets.
#[derive(Debug, Default)]
struct Seen {
    base: u64,
    bytes: Vec<u8>,
}

impl Seen {
    /// The text of `[from, to)` (absolute offsets); forgets what is before `to`.
    fn take(&mut self, from: u64, to: u64) -> String {
        let at = |o: u64| (o.saturating_sub(self.base) as usize).min(self.bytes.len());
        let text = String::from_utf8_lossy(&self.bytes[at(from)..at(to)])
            .trim_end_matches(['\r', '\n'])
            .trim_start_matches(['\r', '\n'])
            .to_string();
        let consumed = at(to);
        self.bytes.drain(..consumed);
        self.base += consumed as u64;
        text
    }
}

/// The CSV input, keeping a copy of what is read in [`Seen`].
struct Tap {
    inner: Input,
    seen: Arc<std::sync::Mutex<Seen>>,
}

impl std::io::Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes
            .extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Whether a CSV row's raw text ends inside a quoted field (a quote that is
/// never closed runs to the end of the input, swallowing the rows after it).
fn unterminated_quote(raw: &str) -> bool {
    #[derive(PartialEq)]
    enum At {
        FieldStart,
        Field,
        Quoted,
        QuoteInQuoted,
    }
    let mut at = At::FieldStart;
    for b in raw.bytes() {
        at = match (at, b) {
            (At::FieldStart, b'"') => At::Quoted,
            (At::FieldStart | At::Field, b',' | b'\n' | b'\r') => At::FieldStart,
            (At::FieldStart | At::Field, _) => At::Field,
            (At::Quoted, b'"') => At::QuoteInQuoted,
            (At::Quoted, _) => At::Quoted,
            (At::QuoteInQuoted, b'"') => At::Quoted,
            (At::QuoteInQuoted, b',' | b'\n' | b'\r') => At::FieldStart,
            (At::QuoteInQuoted, _) => At::Field,
        };
    }
    at == At::Quoted
}

/// Reads a source's file batch by batch.
pub struct SourceReader {
    spec: SourceSpec,
    file_name: String,
    schema: SchemaRef,
    batch_size: usize,
    lines: Lines,
    line: u64,
    /// Lines before a CSV input's first record other than its header (an
    /// input that is the header plus a later part of the file).
    line_base: u64,
    start_index: usize,
    end_index: Option<usize>,
    row: Vec<Cell>,
    /// The raw text of the row being read (for errors and dead letters).
    raw: String,
    done: bool,
}

impl SourceReader {
    /// Opens the source's file.
    pub fn open(spec: &SourceSpec, batch_size: usize) -> Result<Self, SourceError> {
        if let Some(generated) = nexmark::Generated::of(spec)? {
            return Ok(Self::with_lines(
                spec,
                batch_size,
                Lines::Nexmark(generated),
            ));
        }
        let file = File::open(&spec.path).map_err(|error| SourceError::Io {
            source_name: spec.name.clone(),
            path: spec.path.clone(),
            error,
        })?;
        Self::from_reader(spec, batch_size, Box::new(file))
    }

    /// Reads the source's rows from `input` instead of its file; errors still
    /// name `spec.path` (e.g. the ingest request's name) and the line.
    pub fn from_reader(
        spec: &SourceSpec,
        batch_size: usize,
        input: Input,
    ) -> Result<Self, SourceError> {
        let io = |error| SourceError::Io {
            source_name: spec.name.clone(),
            path: spec.path.clone(),
            error,
        };
        let lines = match spec.format {
            SourceFormat::Jsonl => Lines::Jsonl(BufReader::new(input)),
            SourceFormat::Csv => {
                let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
                // Flexible: a row with the wrong number of fields is this
                // reader's error, with its line and text, not csv's.
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(Tap {
                        inner: input,
                        seen: seen.clone(),
                    });
                let header = reader
                    .headers()
                    .map_err(|e| io(std::io::Error::other(e.to_string())))?
                    .clone();
                let mut positions = Vec::new();
                for f in &spec.fields {
                    let pos = header
                        .iter()
                        .position(|h| h.trim() == f.name)
                        .ok_or_else(|| SourceError::MissingHeader {
                            source_name: spec.name.clone(),
                            path: spec.path.clone(),
                            column: f.name.clone(),
                            header: header.iter().collect::<Vec<_>>().join(","),
                        })?;
                    positions.push(pos);
                }
                if spec.strict
                    && let Some(extra) = header
                        .iter()
                        .find(|h| !spec.fields.iter().any(|f| f.name == h.trim()))
                {
                    return Err(SourceError::ExtraHeader {
                        source_name: spec.name.clone(),
                        path: spec.path.clone(),
                        column: extra.to_string(),
                    });
                }
                let header_end = reader.position().byte();
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(0, header_end);
                Lines::Csv {
                    reader,
                    record: csv::StringRecord::new(),
                    seen,
                    width: header.len(),
                    positions,
                }
            }
        };
        Ok(Self::with_lines(spec, batch_size, lines))
    }

    fn with_lines(spec: &SourceSpec, batch_size: usize, lines: Lines) -> Self {
        let index = |name: &str| spec.fields.iter().position(|f| f.name == name);
        SourceReader {
            file_name: spec.path.display().to_string(),
            schema: event_schema(&spec.fields),
            batch_size,
            lines,
            line: if spec.format == SourceFormat::Csv {
                1
            } else {
                0
            },
            line_base: 0,
            start_index: index(&spec.event_time).unwrap_or(0),
            end_index: spec.end_time.as_deref().and_then(index),
            row: vec![Cell::Null; spec.fields.len()],
            raw: String::new(),
            done: false,
            spec: spec.clone(),
        }
    }

    /// The Arrow schema of the batches (interval first).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Numbers lines as if `lines` lines came before the input (reading a
    /// followed file from a recorded position). A CSV input is then the
    /// file's header line followed by the part after those `lines` lines.
    pub fn after_lines(mut self, lines: u64) -> Self {
        self.line = lines;
        if self.spec.format == SourceFormat::Csv {
            self.line_base = lines.saturating_sub(1);
        }
        self
    }

    /// The number of the last line read.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// An error about the current row (its raw text is kept with it).
    fn row_error(&self, column: Option<&str>, message: String) -> RowError {
        RowError {
            file: self.file_name.clone(),
            line: self.line,
            column: column.map(str::to_string),
            message,
            raw: self.raw.clone(),
        }
    }

    /// Parses one JSON line into `self.row`.
    fn parse_json(&mut self, text: &str) -> Result<(), RowError> {
        let value: Json = serde_json::from_str(text)
            .map_err(|e| self.row_error(None, format!("invalid JSON: {e}")))?;
        let Json::Object(object) = value else {
            return Err(self.row_error(None, "expected a JSON object".into()));
        };
        if self.spec.strict
            && let Some(extra) = object
                .keys()
                .find(|k| !self.spec.fields.iter().any(|f| f.name == **k))
        {
            return Err(self.row_error(
                Some(extra),
                "the schema declares no such column (the source is `strict`)".into(),
            ));
        }
        for (i, field) in self.spec.fields.iter().enumerate() {
            let cell = match object.get(&field.name) {
                None | Some(Json::Null) => Cell::Null,
                Some(v) => json_cell(field.ty, v).ok_or_else(|| {
                    self.row_error(
                        Some(&field.name),
                        format!(
                            "expected {}, found {}",
                            type_name(field.ty),
                            describe_json(v)
                        ),
                    )
                })?,
            };
            self.check_null(field, &cell)?;
            self.row[i] = cell;
        }
        Ok(())
    }

    fn parse_csv(
        &mut self,
        record: &csv::StringRecord,
        width: usize,
        positions: &[usize],
    ) -> Result<(), RowError> {
        if unterminated_quote(&self.raw) {
            return Err(self.row_error(
                None,
                "a quoted field is never closed: its quote runs to the end of the input, over every row after it".into(),
            ));
        }
        if record.len() != width {
            return Err(self.row_error(
                None,
                format!(
                    "the row has {} fields but the header has {width} (a value holding a comma needs double quotes)",
                    record.len()
                ),
            ));
        }
        for (i, field) in self.spec.fields.iter().enumerate() {
            let text = record.get(positions[i]).ok_or_else(|| {
                self.row_error(
                    Some(&field.name),
                    format!("the row has {} fields, the header more", record.len()),
                )
            })?;
            let cell = if text.is_empty() && (field.nullable || field.ty != ColumnType::Utf8) {
                Cell::Null
            } else {
                csv_cell(field.ty, text).ok_or_else(|| {
                    self.row_error(
                        Some(&field.name),
                        format!("expected {}, found `{text}`", type_name(field.ty)),
                    )
                })?
            };
            self.check_null(field, &cell)?;
            self.row[i] = cell;
        }
        Ok(())
    }

    fn check_null(&self, field: &Field, cell: &Cell) -> Result<(), RowError> {
        if *cell == Cell::Null && !field.nullable {
            return Err(self.row_error(
                Some(&field.name),
                format!(
                    "missing or null, but the column is declared `{}` (use `{}?` for a nullable column)",
                    type_name(field.ty),
                    type_name(field.ty)
                ),
            ));
        }
        Ok(())
    }

    /// The next batch, or `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, SourceError> {
        if self.done {
            return Ok(None);
        }
        if let Lines::Nexmark(g) = &mut self.lines {
            let chunk = g.next(&self.schema, self.batch_size);
            self.line = g.position();
            self.done = chunk.is_none();
            return Ok(chunk);
        }
        let mut builders: Vec<Builder> = self
            .spec
            .fields
            .iter()
            .map(|f| match f.ty {
                ColumnType::Int64 => Builder::Int(Int64Builder::with_capacity(self.batch_size)),
                ColumnType::Float64 => {
                    Builder::Float(Float64Builder::with_capacity(self.batch_size))
                }
                ColumnType::Boolean => {
                    Builder::Bool(BooleanBuilder::with_capacity(self.batch_size))
                }
                ColumnType::Utf8 => Builder::Str(StringBuilder::with_capacity(
                    self.batch_size,
                    self.batch_size * 16,
                )),
            })
            .collect();
        let mut start = Int64Builder::with_capacity(self.batch_size);
        let mut end = Int64Builder::with_capacity(self.batch_size);
        let mut rejected = Vec::new();
        let mut rows = 0;
        let mut bytes = 0;
        let mut line_bytes = Vec::new();
        while rows < self.batch_size && bytes < MAX_BATCH_BYTES {
            let io = |error| SourceError::Io {
                source_name: self.spec.name.clone(),
                path: self.spec.path.clone(),
                error,
            };
            let parsed = match &mut self.lines {
                Lines::Nexmark(_) => None,
                Lines::Jsonl(lines) => {
                    line_bytes.clear();
                    if lines.read_until(b'\n', &mut line_bytes).map_err(io)? == 0 {
                        None
                    } else {
                        self.line += 1;
                        bytes += line_bytes.len();
                        let text = match std::str::from_utf8(&line_bytes) {
                            Ok(text) => text,
                            Err(e) => {
                                self.raw =
                                    String::from_utf8_lossy(&line_bytes).trim_end().to_string();
                                rejected.push(self.row_error(
                                    None,
                                    format!(
                                        "invalid UTF-8 at byte {} of the line",
                                        e.valid_up_to() + 1
                                    ),
                                ));
                                continue;
                            }
                        };
                        let text = text.trim_end_matches(['\n', '\r']);
                        if text.trim().is_empty() {
                            continue;
                        }
                        self.raw = text.to_string();
                        let text = std::mem::take(&mut self.raw);
                        let parsed = self.parse_json(&text);
                        self.raw = text;
                        Some(parsed)
                    }
                }
                Lines::Csv {
                    reader,
                    record,
                    seen,
                    width,
                    positions,
                } => {
                    let (width, positions) = (*width, positions.clone());
                    let read = reader.read_record(record);
                    let end = reader.position().byte();
                    let start = match &read {
                        Ok(_) => record.position().map(|p| p.byte()),
                        Err(e) => e.position().map(|p| p.byte()),
                    };
                    let raw = seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take(start.unwrap_or(end), end);
                    bytes += raw.len();
                    self.raw = raw;
                    match read {
                        Ok(false) => None,
                        Ok(true) => {
                            self.line = record
                                .position()
                                .map(|p| self.line_base + p.line())
                                .unwrap_or(self.line + 1);
                            let record = std::mem::take(record);
                            let parsed = self.parse_csv(&record, width, &positions);
                            if let Lines::Csv { record: slot, .. } = &mut self.lines {
                                *slot = record;
                            }
                            Some(parsed)
                        }
                        Err(e) => {
                            self.line = e
                                .position()
                                .map(|p| self.line_base + p.line())
                                .unwrap_or(self.line + 1);
                            Some(Err(self.row_error(None, format!("malformed CSV: {e}"))))
                        }
                    }
                }
            };
            match parsed {
                None => {
                    self.done = true;
                    break;
                }
                Some(Err(e)) => rejected.push(e),
                Some(Ok(())) => {
                    // Intervals are in microseconds, whatever the columns' unit.
                    let (event_unit, end_unit) = (self.spec.event_unit, self.spec.end_unit);
                    let raw0 = match self.row[self.start_index] {
                        Cell::Int(t) => t,
                        _ => 0,
                    };
                    let Some(t0) = raw0.checked_mul(event_unit.micros()) else {
                        let name = self.spec.event_time.clone();
                        rejected.push(self.row_error(
                            Some(&name),
                            format!(
                                "{raw0} {} is beyond the range of event times in microseconds",
                                event_unit.name()
                            ),
                        ));
                        continue;
                    };
                    let t1 = match self.end_index.map(|i| &self.row[i]) {
                        Some(Cell::Int(t)) => match t.checked_mul(end_unit.micros()) {
                            Some(t1) => t1,
                            None => {
                                let name = self.spec.end_time.clone();
                                rejected.push(self.row_error(
                                    name.as_deref(),
                                    format!(
                                        "{t} {} is beyond the range of event times in microseconds",
                                        end_unit.name()
                                    ),
                                ));
                                continue;
                            }
                        },
                        _ => t0.saturating_add(1),
                    };
                    if t1 <= t0 {
                        let name = self.spec.end_time.clone();
                        rejected.push(self.row_error(
                            name.as_deref(),
                            format!("event end {t1} is not after its start {t0}"),
                        ));
                        continue;
                    }
                    start.append_value(t0);
                    end.append_value(t1);
                    for (b, cell) in builders.iter_mut().zip(self.row.iter_mut()) {
                        append(b, std::mem::replace(cell, Cell::Null));
                    }
                    rows += 1;
                }
            }
        }
        if rows == 0 && rejected.is_empty() && self.done {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(start.finish()), Arc::new(end.finish())];
        columns.extend(builders.into_iter().map(|b| -> ArrayRef {
            match b {
                Builder::Int(mut b) => Arc::new(b.finish()),
                Builder::Float(mut b) => Arc::new(b.finish()),
                Builder::Bool(mut b) => Arc::new(b.finish()),
                Builder::Str(mut b) => Arc::new(b.finish()),
            }
        }));
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| SourceError::Io {
                source_name: self.spec.name.clone(),
                path: self.spec.path.clone(),
                error: std::io::Error::other(e.to_string()),
            })?;
        Ok(Some(Chunk { batch, rejected }))
    }
}

fn append(builder: &mut Builder, cell: Cell) {
    match (builder, cell) {
        (Builder::Int(b), Cell::Int(v)) => b.append_value(v),
        (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
        (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
        (Builder::Str(b), Cell::Str(v)) => b.append_value(v),
        (Builder::Int(b), _) => b.append_null(),
        (Builder::Float(b), _) => b.append_null(),
        (Builder::Bool(b), _) => b.append_null(),
        (Builder::Str(b), _) => b.append_null(),
    }
}

fn json_cell(ty: ColumnType, v: &Json) -> Option<Cell> {
    match (ty, v) {
        (ColumnType::Int64, Json::Number(n)) => n.as_i64().map(Cell::Int),
        (ColumnType::Float64, Json::Number(n)) => n.as_f64().map(Cell::Float),
        (ColumnType::Boolean, Json::Bool(b)) => Some(Cell::Bool(*b)),
        (ColumnType::Utf8, Json::String(s)) => Some(Cell::Str(s.clone())),
        _ => None,
    }
}

fn csv_cell(ty: ColumnType, text: &str) -> Option<Cell> {
    let t = text.trim();
    match ty {
        ColumnType::Int64 => t.parse().ok().map(Cell::Int),
        ColumnType::Float64 => t.parse().ok().map(Cell::Float),
        ColumnType::Boolean => match t {
            "true" | "TRUE" | "True" | "1" => Some(Cell::Bool(true)),
            "false" | "FALSE" | "False" | "0" => Some(Cell::Bool(false)),
            _ => None,
        },
        ColumnType::Utf8 => Some(Cell::Str(text.to_string())),
    }
}

fn describe_json(v: &Json) -> String {
    let text = v.to_string();
    let short: String = text.chars().take(40).collect();
    let kind = match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a float",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    };
    format!("{kind} {short}")
}

#[cfg(test)]
mod tests;
