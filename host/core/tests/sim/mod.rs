//! The job, its inputs and the simulated store that the simulations of
//! the core (one node, `simulation.rs`; several, `cluster_simulation.rs`)
//! share. Each test target uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use weir_core::entry::{END, Entry};
use weir_core::plan::{CtiPolicy, ErrorPolicy, Recovery, StageKind, UdfSpec};
use weir_core::schema::{ColumnType, Field, event_schema, field};
use weir_core::stage::UdfStage;
use weir_core::udf::{
    CallError, KeyedState, Limits, NativeCall, NativeResult, NativeTimerCall, NativeUdf,
    OutputColumn, Signature, StateWrite, TIMERS, TimedOutput, UdfOutput, decode_entry,
    decode_timers, encode_timers,
};
use weir_core::vertex::{CtiGen, Operator, Resume, Vertex, VertexSnapshot};

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn click_fields() -> Vec<Field> {
    vec![
        field("user", ColumnType::Utf8, false),
        field("n", ColumnType::Int64, false),
    ]
}

/// An ingested input: batches of clicks, roughly in time order with some
/// out of order (late ones among them), then the end marker.
pub fn input(rng: &mut Rng, stream: u64) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut t = 0i64;
    for _ in 0..(4 + rng.below(8)) {
        let rows = 1 + rng.below(12) as usize;
        let mut starts = Vec::with_capacity(rows);
        let mut users = Vec::with_capacity(rows);
        let mut ns = Vec::with_capacity(rows);
        for _ in 0..rows {
            t += rng.below(4) as i64;
            let jitter = if rng.below(6) == 0 {
                rng.below(12) as i64
            } else {
                0
            };
            starts.push(t - jitter);
            users.push(format!("u{}", rng.below(5)));
            ns.push((stream * 1000 + rng.below(1000)) as i64);
        }
        let ends: Vec<i64> = starts.iter().map(|s| s + 1).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
            Arc::new(StringArray::from(users)),
            Arc::new(Int64Array::from(ns)),
        ];
        let batch = RecordBatch::try_new(event_schema(&click_fields()), columns).expect("batch");
        entries.push(Entry::Batch {
            producer: "ingest".into(),
            batch,
        });
    }
    entries.push(Entry::Cti(END));
    entries
}

/// Counts clicks per user and writes `(user, count)` for every click: a
/// reducer over host-owned keyed state.
pub fn count_per_user() -> NativeUdf {
    let signature = Signature {
        reads: vec![field("user", ColumnType::Utf8, false)],
        reads_interval: false,
        writes: vec![
            field("user", ColumnType::Utf8, false),
            field("count", ColumnType::Int64, false),
        ],
        passthrough: false,
    };
    NativeUdf::new(
        "count_per_user",
        signature,
        |call: NativeCall<'_>| -> NativeResult {
            let users = call.batch.column(call.reads[0]).as_string::<i32>();
            let keys = call.keys.expect("a reducer gets keys");
            let mut counts: HashMap<u32, i64> = HashMap::new();
            let mut out = Vec::with_capacity(users.len());
            for (row, &g) in keys.groups.iter().enumerate() {
                let count = counts.entry(g).or_insert_with(|| {
                    call.state
                        .get(keys.key(g as usize))
                        .and_then(|names| names.get("count"))
                        .map_or(0, |b| {
                            i64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
                        })
                });
                *count += 1;
                out.push(*count);
                let _ = row;
            }
            let writes = counts
                .into_iter()
                .map(|(g, c)| {
                    let names =
                        BTreeMap::from([("count".to_string(), Some(c.to_le_bytes().to_vec()))]);
                    (keys.key(g as usize).to_vec(), names)
                })
                .collect();
            let output = UdfOutput {
                parents: (0..users.len() as u32).collect(),
                columns: vec![
                    OutputColumn::Input(0),
                    OutputColumn::Written(Arc::new(Int64Array::from(out))),
                ],
            };
            Ok((output, writes))
        },
    )
}

/// The width of the windows [`windowed_count`] counts in.
pub const WINDOW: i64 = 8;

/// A key's open windows: (start, clicks) each.
pub type Windows = Vec<(i64, i64)>;

/// A key's open windows, kept under "w".
pub fn windows_of(names: Option<&BTreeMap<String, Vec<u8>>>) -> Windows {
    names
        .and_then(|n| n.get("w"))
        .map(|b| postcard::from_bytes(b).expect("windows"))
        .unwrap_or_default()
}

/// Counts clicks per user in tumbling windows of [`WINDOW`], each emitted
/// as a point at its end once a CTI passes it: a timed reducer, whose
/// timers live in host-owned state.
pub fn windowed_count() -> NativeUdf {
    let signature = Signature {
        reads: vec![field("user", ColumnType::Utf8, false)],
        reads_interval: true,
        writes: vec![
            field("user", ColumnType::Utf8, false),
            field("window", ColumnType::Int64, false),
            field("clicks", ColumnType::Int64, false),
        ],
        passthrough: false,
    };
    // Rows never emit: the windows go out as CTIs pass.
    let columns = vec![
        OutputColumn::Written(Arc::new(StringArray::from(Vec::<String>::new()))),
        OutputColumn::Written(Arc::new(Int64Array::from(Vec::<i64>::new()))),
        OutputColumn::Written(Arc::new(Int64Array::from(Vec::<i64>::new()))),
    ];
    NativeUdf::new(
        "windowed_count",
        signature,
        move |call: NativeCall<'_>| -> NativeResult {
            let starts = call.batch.column(0).as_primitive::<Int64Type>();
            let keys = call.keys.expect("a reducer gets keys");
            let mut groups: BTreeMap<u32, (Windows, Vec<i64>)> = BTreeMap::new();
            for (row, &g) in keys.groups.iter().enumerate() {
                let (windows, timers) = groups.entry(g).or_insert_with(|| {
                    let names = call.state.get(keys.key(g as usize));
                    let timers = names
                        .and_then(|n| n.get(TIMERS))
                        .map(|b| decode_timers(b))
                        .unwrap_or_default();
                    (windows_of(names), timers)
                });
                let start = starts.value(row).div_euclid(WINDOW) * WINDOW;
                match windows.iter_mut().find(|(s, _)| *s == start) {
                    Some((_, n)) => *n += 1,
                    None => {
                        windows.push((start, 1));
                        timers.push(start + WINDOW);
                        timers.sort_unstable();
                        timers.dedup();
                    }
                }
            }
            let writes: Vec<StateWrite> = groups
                .into_iter()
                .map(|(g, (windows, timers))| {
                    let names = BTreeMap::from([
                        (
                            "w".to_string(),
                            Some(postcard::to_allocvec(&windows).expect("encodes")),
                        ),
                        (TIMERS.to_string(), Some(encode_timers(&timers))),
                    ]);
                    (keys.key(g as usize).to_vec(), names)
                })
                .collect();
            let output = UdfOutput {
                parents: Vec::new(),
                columns: columns.clone(),
            };
            Ok((output, writes))
        },
    )
    .with_timers(
        |call: NativeTimerCall<'_>| -> Result<(TimedOutput, Vec<StateWrite>), CallError> {
            let fired = call.fired;
            let mut open: BTreeMap<Vec<u8>, Windows> = BTreeMap::new();
            let (mut users, mut windows, mut clicks) = (Vec::new(), Vec::new(), Vec::new());
            let mut at = Vec::new();
            for i in 0..fired.len() {
                let key = fired.key(i).to_vec();
                let list = open
                    .entry(key.clone())
                    .or_insert_with(|| windows_of(call.state.get(&key)));
                let start = fired.at[i] - WINDOW;
                let Some(k) = list.iter().position(|(s, _)| *s == start) else {
                    continue;
                };
                let (_, n) = list.remove(k);
                users.push(String::from_utf8(key).expect("utf8 key"));
                windows.push(start);
                clicks.push(n);
                at.push(fired.at[i]);
            }
            let writes = open
                .into_iter()
                .map(|(key, list)| {
                    let value =
                        (!list.is_empty()).then(|| postcard::to_allocvec(&list).expect("encodes"));
                    (key, BTreeMap::from([("w".to_string(), value)]))
                })
                .collect();
            let output = TimedOutput {
                end: at.iter().map(|t| t + 1).collect(),
                start: at,
                columns: vec![
                    Arc::new(StringArray::from(users)),
                    Arc::new(Int64Array::from(windows)),
                    Arc::new(Int64Array::from(clicks)),
                ],
            };
            Ok((output, writes))
        },
    )
}

/// The job: two sources with CTI policies -> union (replay recovery) ->
/// a per-user count (checkpoints every other CTI) and a per-user count in
/// windows emitted by timers (checkpoints every third CTI).
pub struct Job {
    /// Per vertex: its input streams and its output and dead-letter streams.
    pub wiring: Vec<(Vec<usize>, usize, usize)>,
}

pub const INPUT_A: usize = 0;
pub const INPUT_B: usize = 1;
pub const STREAMS: usize = 12;
pub const RESULT: usize = 8;
pub const WINDOWS: usize = 10;

impl Job {
    pub fn new() -> Job {
        Job {
            wiring: vec![
                (vec![INPUT_A], 2, 3),  // source a
                (vec![INPUT_B], 4, 5),  // source b
                (vec![2, 4], 6, 7),     // union
                (vec![6], RESULT, 9),   // count
                (vec![6], WINDOWS, 11), // windows
            ],
        }
    }

    /// Vertex `v` resumed as `resume` says.
    pub fn vertex(&self, v: usize, resume: Resume) -> Vertex {
        let schema = event_schema(&click_fields());
        let (name, operator, recovery) = match v {
            0 => (
                "a",
                Operator::Source(CtiGen::new(CtiPolicy::Lag(3))),
                Recovery::Checkpoint { every: 1 },
            ),
            1 => (
                "b",
                Operator::Source(CtiGen::new(CtiPolicy::Every(4))),
                Recovery::Checkpoint { every: 2 },
            ),
            2 => ("all", Operator::Union, Recovery::Replay { window: 2 }),
            4 => (
                "windows",
                reducer(
                    "windows",
                    "native:windowed_count",
                    windowed_count(),
                    &schema,
                ),
                Recovery::Checkpoint { every: 3 },
            ),
            _ => (
                "count",
                reducer("count", "native:count_per_user", count_per_user(), &schema),
                Recovery::Checkpoint { every: 2 },
            ),
        };
        let inputs = self.wiring[v].0.len();
        Vertex::load(name, operator, schema, inputs, recovery, resume).expect("vertex loads")
    }
}

/// A reducer stage `name` keyed by user, running `udf` (`component`).
fn reducer(name: &str, component: &str, udf: NativeUdf, schema: &SchemaRef) -> Operator {
    let spec = UdfSpec {
        args: Vec::new(),
        kind: StageKind::Reducer,
        component: component.into(),
        params: Vec::new(),
        key: Some("user".into()),
        output: None,
        on_trap: ErrorPolicy::Fail,
        limits: Limits::default(),
    };
    let stage = UdfStage::new(name, &spec, Box::new(udf), schema.clone()).expect("stage");
    Operator::Udf(Box::new(stage))
}

/// The seeds a simulation runs: `WEIR_SIM_SEED` alone, else the first
/// `WEIR_SIM_SEEDS` (64 by default).
pub fn seeds() -> Vec<u64> {
    match std::env::var("WEIR_SIM_SEED") {
        Ok(one) => vec![one.parse().expect("WEIR_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("WEIR_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(64);
            (1..=n).collect()
        }
    }
}

/// The two ingested inputs of seed `seed`.
pub fn inputs_of(seed: u64) -> Vec<Vec<Entry>> {
    let mut rng = Rng(seed ^ 0x5eed);
    vec![input(&mut rng, 0), input(&mut rng, 1)]
}

/// One write, in the order the committer takes them.
#[derive(Clone)]
pub enum Op {
    Put {
        stream: usize,
        seq: u64,
        bytes: Vec<u8>,
    },
    Snapshot {
        vertex: usize,
        bytes: Vec<u8>,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    },
    /// A backup's copy of a vertex's snapshot with its whole keyed state.
    Stored {
        vertex: usize,
        bytes: Vec<u8>,
        state: BTreeMap<Vec<u8>, Vec<u8>>,
    },
    /// A stream's entries before `below` are collected.
    Collect { stream: usize, below: u64 },
}

/// What the store holds after applying a log.
#[derive(Default, Clone)]
pub struct View {
    pub streams: Vec<BTreeMap<u64, Vec<u8>>>,
    /// Per stream: entries before this seq are collected.
    pub low: Vec<u64>,
    pub snapshots: HashMap<usize, Vec<u8>>,
    pub state: HashMap<usize, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl View {
    /// A store that holds every input.
    pub fn new(inputs: &[Vec<Entry>]) -> View {
        View::holding(inputs, &[INPUT_A, INPUT_B])
    }

    /// A store that holds the inputs `held` (ingest streams, by index).
    pub fn holding(inputs: &[Vec<Entry>], held: &[usize]) -> View {
        let mut view = View {
            streams: vec![BTreeMap::new(); STREAMS],
            low: vec![0; STREAMS],
            ..View::default()
        };
        for &s in held {
            for (seq, e) in inputs[s].iter().enumerate() {
                view.streams[s].insert(seq as u64, e.encode().expect("encodes"));
            }
        }
        view
    }

    /// Applies one write; a rewrite of a seq must hold the same bytes.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Put { stream, seq, .. } if *seq < self.low[*stream] => Ok(()),
            Op::Put { stream, seq, bytes } => match self.streams[*stream].get(seq) {
                Some(held) if held != bytes => Err(format!(
                    "stream {stream} seq {seq} rewritten with other bytes"
                )),
                Some(_) => Ok(()),
                None => {
                    self.streams[*stream].insert(*seq, bytes.clone());
                    Ok(())
                }
            },
            Op::Snapshot {
                vertex,
                bytes,
                changes,
            } => {
                self.snapshots.insert(*vertex, bytes.clone());
                let state = self.state.entry(*vertex).or_default();
                for (key, value) in changes {
                    match value {
                        Some(v) => state.insert(key.clone(), v.clone()),
                        None => state.remove(key),
                    };
                }
                Ok(())
            }
            Op::Stored {
                vertex,
                bytes,
                state,
            } => {
                self.snapshots.insert(*vertex, bytes.clone());
                self.state.insert(*vertex, state.clone());
                Ok(())
            }
            Op::Collect { stream, below } => {
                if *below > self.low[*stream] {
                    self.low[*stream] = *below;
                    let kept = self.streams[*stream].split_off(below);
                    self.streams[*stream] = kept;
                }
                Ok(())
            }
        }
    }

    /// Where vertex `v` resumes: its latest durable snapshot and state.
    pub fn resume(&self, v: usize, inputs: usize) -> Resume {
        match self.snapshots.get(&v) {
            None => Resume::Fresh(vec![0; inputs]),
            Some(bytes) => {
                let snapshot: VertexSnapshot = postcard::from_bytes(bytes).expect("snapshot");
                let mut state = KeyedState::new();
                for (key, value) in self.state.get(&v).into_iter().flatten() {
                    state.insert(key.clone(), decode_entry(value).expect("state entry"));
                }
                Resume::Snapshot(Box::new(snapshot), state)
            }
        }
    }
}

/// A run's result: every stream the job wrote, entry by entry.
pub type Written = Vec<BTreeMap<u64, Vec<u8>>>;

/// Runs the job on the schedule `seed` draws; with `crashes`, crashes at
/// points it draws too. Returns what the job wrote and how many crashes.
pub fn run(inputs: &[Vec<Entry>], seed: u64, crashes: bool) -> Result<(Written, u64), String> {
    let job = Job::new();
    let mut rng = Rng(seed);
    let mut log: Vec<Op> = Vec::new();
    let mut durable = 0usize;
    let mut view = View::new(inputs);
    let mut vertices: Vec<Vertex> = (0..job.wiring.len())
        .map(|v| job.vertex(v, view.resume(v, job.wiring[v].0.len())))
        .collect();
    let mut crashed = 0;
    for _step in 0..100_000 {
        if vertices.iter().all(|v| v.position().finished) {
            let mut written = view.streams;
            written.truncate(STREAMS);
            for s in [INPUT_A, INPUT_B] {
                written[s].clear();
            }
            return Ok((written, crashed));
        }
        // The committer makes everything so far durable, now and then.
        if rng.below(8) == 0 {
            durable = log.len();
        }
        if crashes && rng.below(16) == 0 {
            // A crash: a prefix of what was not yet durable survives.
            let keep = durable + rng.below((log.len() - durable) as u64 + 1) as usize;
            log.truncate(keep);
            durable = keep;
            view = View::new(inputs);
            for op in &log {
                view.apply(op)?;
            }
            vertices = (0..job.wiring.len())
                .map(|v| job.vertex(v, view.resume(v, job.wiring[v].0.len())))
                .collect();
            crashed += 1;
            continue;
        }
        // A vertex with input to read, and one of its inputs, by the schedule.
        let ready: Vec<(usize, usize)> = (0..vertices.len())
            .flat_map(|v| (0..job.wiring[v].0.len()).map(move |i| (v, i)))
            .filter(|&(v, i)| {
                let at = vertices[v].position().inputs[i];
                view.streams[job.wiring[v].0[i]].contains_key(&at)
            })
            .collect();
        if ready.is_empty() {
            return Err("no vertex can go on, yet the job did not finish".into());
        }
        let (v, i) = ready[rng.below(ready.len() as u64) as usize];
        let (ins, out, dead) = &job.wiring[v];
        let seq = vertices[v].position().inputs[i];
        let entry = Entry::decode(&view.streams[ins[i]][&seq])?;
        let fx = vertices[v]
            .on_entry(i, seq, entry)
            .map_err(|e| format!("vertex {v}: {e}"))?;
        let mut ops = Vec::new();
        for (stream, entries) in [(*out, fx.output), (*dead, fx.dead)] {
            for (seq, e) in entries {
                ops.push(Op::Put {
                    stream,
                    seq,
                    bytes: e.encode()?,
                });
            }
        }
        if let Some(mut snapshot) = fx.snapshot {
            let changes = std::mem::take(&mut snapshot.state);
            ops.push(Op::Snapshot {
                vertex: v,
                bytes: postcard::to_allocvec(&snapshot).map_err(|e| e.to_string())?,
                changes,
            });
        }
        for op in ops {
            view.apply(&op)?;
            log.push(op);
        }
    }
    Err("the job did not finish within 100,000 steps".into())
}
