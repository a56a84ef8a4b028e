//! What the core needs of a UDF, and nothing of how it runs: the [`Udf`]
//! trait a stage calls once per batch, the keyed state a reducer may touch,
//! and the errors a call can end in. The Wasm runtime implements it for
//! sandboxed components; tests implement it with native closures.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch};
use sha2::{Digest, Sha256};

use crate::schema::Field;

mod native;
mod timers;

pub use native::{NativeCall, NativeResult, NativeTimerCall, NativeUdf, StateWrite};
pub use timers::{Fired, TIMERS, decode_timers, encode_timers};

/// The SHA-256 of a component's bytes, in hex: the identity of a UDF version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleVersion(String);

impl ModuleVersion {
    /// The version of these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        ModuleVersion(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
    /// The full hex digest.
    pub fn hex(&self) -> &str {
        &self.0
    }
    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for ModuleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Which module a UDF runs, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleId {
    /// Content address.
    pub version: ModuleVersion,
    /// Where it was loaded from (a component's path).
    pub path: String,
}

/// Resource limits of one UDF instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, Wasm instructions) granted per input row of a call.
    pub fuel_per_row: u64,
    /// Fuel granted per call on top of the per-row budget.
    pub fuel_per_call: u64,
    /// Linear memory limit in bytes.
    pub memory_bytes: usize,
    /// Wall-clock backstop for one call.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_row: 2_000_000,
            fuel_per_call: 50_000_000,
            memory_bytes: 256 << 20,
            deadline: Duration::from_secs(30),
        }
    }
}

/// What a UDF reads and writes, as its `init` declared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    /// Input columns it reads, in the order its batches carry them.
    pub reads: Vec<Field>,
    /// Whether it reads the event interval.
    pub reads_interval: bool,
    /// Columns it writes.
    pub writes: Vec<Field>,
    /// Whether every output row also carries all columns of its parent row.
    pub passthrough: bool,
}

/// The distinct keys of a reducer's batch, and each row's key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGroups {
    /// Byte offsets of each key in `data`: one more than there are keys.
    pub offsets: Vec<u32>,
    /// The keys' bytes (UTF-8 text or little-endian `i64`).
    pub data: Vec<u8>,
    /// For every row, the index of its key.
    pub groups: Vec<u32>,
}

impl KeyGroups {
    /// Key `g`'s bytes.
    pub fn key(&self, g: usize) -> &[u8] {
        let (a, b) = (self.offsets[g] as usize, self.offsets[g + 1] as usize);
        self.data.get(a..b).unwrap_or_default()
    }

    /// The number of distinct keys.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One column of a UDF's output.
#[derive(Debug, Clone)]
pub enum OutputColumn {
    /// Values the UDF wrote, one per output row.
    Written(ArrayRef),
    /// The input column at this index (into what the UDF reads), taken at
    /// the output rows' parents.
    Input(u32),
}

/// What a call produced: for every output row the input row it came from
/// (non-decreasing), and the written columns in the signature's order.
#[derive(Debug, Clone)]
pub struct UdfOutput {
    /// Each output row's parent row.
    pub parents: Vec<u32>,
    /// The columns of `writes`.
    pub columns: Vec<OutputColumn>,
}

/// One call: a batch and what to make of it.
#[derive(Debug)]
pub struct Call<'a> {
    /// The input batch (the stage's input schema, interval first).
    pub batch: &'a RecordBatch,
    /// The columns of `batch` the UDF reads, in the signature's order.
    pub reads: &'a [usize],
    /// For a reducer: the rows' keys.
    pub keys: Option<KeyGroups>,
    /// `Some(position)` when the call starts a segment of the input at that
    /// position: clocks read the start of the batch's first event and random
    /// numbers restart from a seed of the stage and the position. `None`
    /// carries on the current segment.
    pub segment: Option<u64>,
}

/// How a call ended when it produced nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// A trap or an error value: a row is to blame.
    Failed(CallError),
    /// Output that breaks the contract: a bug in the UDF or its SDK.
    Malformed(String),
}

/// A running UDF, as a stage sees it. Every method is deterministic: the
/// same calls in the same order give the same results.
pub trait Udf: Send {
    /// The module it runs.
    fn module(&self) -> &ModuleId;
    /// What it reads and writes.
    fn signature(&self) -> &Signature;
    /// Runs it over one batch. A reducer's state writes apply only if the
    /// call succeeds.
    fn call(&mut self, call: Call<'_>) -> Result<UdfOutput, CallFailure>;
    /// A fresh instance in place of one that failed, keeping keyed state.
    fn reset(&mut self) -> Result<(), CallError>;
    /// Log lines since the last drain.
    fn drain_logs(&mut self) -> Vec<String>;
    /// The current segment's clock and random state.
    fn segment(&self) -> (i64, u64);
    /// Carries on a segment whose clock and random state a snapshot kept.
    fn resume_segment(&mut self, clock: i64, random: u64);
    /// Its keyed state, and which keys changed since the last checkpoint.
    fn state(&mut self) -> &mut KeyedStore;
    /// Whether it converts another version's state when it takes over.
    fn migrates(&self) -> bool;
    /// Converts the keyed state left by version `from` (hex); `position`
    /// seeds randomness. Writes apply only if it succeeds.
    fn migrate(&mut self, from: &str, position: u64) -> Result<(), CallError>;
    /// Whether it is a timed reducer: one with `on-cti`.
    fn timed(&self) -> bool {
        false
    }
    /// What it has used (nothing, for a UDF that does not count).
    fn usage(&self) -> Usage {
        Usage::default()
    }
    /// Calls `on-cti` with timers that fired (already gone from the state);
    /// its state writes apply only if it succeeds.
    fn on_cti(&mut self, call: TimerCall<'_>) -> Result<TimedOutput, CallFailure> {
        let _ = call;
        Err(CallFailure::Malformed(
            "the UDF has no on-cti, so it cannot fire timers".into(),
        ))
    }
}

/// What a UDF instance has used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Fuel (roughly, Wasm instructions) its calls consumed, in all.
    pub fuel: u64,
    /// The size of its linear memory now, in bytes.
    pub memory_bytes: u64,
}

/// One `on-cti` call: the CTI passing and the timers it fired.
#[derive(Debug)]
pub struct TimerCall<'a> {
    /// The CTI.
    pub cti: i64,
    /// The timers, by time then key.
    pub fired: &'a Fired,
    /// Seeds the call's random numbers (its clock reads `cti`).
    pub seed: u64,
}

/// Rows a timed reducer emits as a CTI passes: each with the interval the
/// UDF gave it, and the written columns in the signature's order.
#[derive(Debug, Clone)]
pub struct TimedOutput {
    /// Interval starts.
    pub start: Vec<i64>,
    /// Interval ends.
    pub end: Vec<i64>,
    /// The columns of `writes`, `start.len()` rows each.
    pub columns: Vec<ArrayRef>,
}

/// Keyed state of a reducer stage: key bytes → name → value.
pub type KeyedState = BTreeMap<Vec<u8>, BTreeMap<String, Vec<u8>>>;

/// One key's entry (name → value) as the state table stores it.
pub fn encode_entry(names: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    postcard::to_allocvec(names).expect("a map of strings to bytes always encodes")
}

/// Decodes one key's entry of the state table.
pub fn decode_entry(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Changes to one owner's keyed state: `(key, Some(value))` sets a key,
/// `(key, None)` removes it.
pub type StateChanges = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A reducer's keyed state, host-owned, with the keys changed since the last
/// checkpoint.
#[derive(Debug, Clone, Default)]
pub struct KeyedStore {
    state: KeyedState,
    dirty: HashSet<Vec<u8>>,
    /// Every key's timers (kept under [`TIMERS`] in its state), by time.
    timers: BTreeSet<(i64, Vec<u8>)>,
}

impl KeyedStore {
    /// The state.
    pub fn get(&self) -> &KeyedState {
        &self.state
    }

    /// Replaces the state (restoring a snapshot); nothing is changed since.
    pub fn set(&mut self, state: KeyedState) {
        self.state = state;
        self.dirty.clear();
        self.index_timers();
    }

    /// Applies the writes of a call that succeeded: per key, names set to a
    /// value or removed. A key with nothing left is no key.
    pub fn apply(
        &mut self,
        writes: impl IntoIterator<Item = (Vec<u8>, BTreeMap<String, Option<Vec<u8>>>)>,
    ) {
        for (key, writes) in writes {
            if writes.is_empty() {
                continue;
            }
            if !self.dirty.contains(&key) {
                self.dirty.insert(key.clone());
            }
            let timed = writes.contains_key(TIMERS);
            if timed {
                self.unindex_timers(&key);
            }
            let apply = |names: &mut BTreeMap<String, Vec<u8>>| {
                for (name, value) in writes {
                    match value {
                        Some(v) => names.insert(name, v),
                        None => names.remove(&name),
                    };
                }
            };
            let index = timed.then(|| key.clone());
            match self.state.entry(key) {
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    apply(held.get_mut());
                    if held.get().is_empty() {
                        held.remove();
                    }
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let mut names = BTreeMap::new();
                    apply(&mut names);
                    if !names.is_empty() {
                        slot.insert(names);
                    }
                }
            }
            if let Some(key) = index {
                self.index_key_timers(&key);
            }
        }
    }

    /// Forgets which keys changed (state that is not checkpointed).
    pub fn forget_delta(&mut self) {
        self.dirty.clear();
    }

    /// The keys changed since the last call, each with its encoded entry
    /// ([`encode_entry`]) or `None` when it no longer exists: what a
    /// checkpoint writes, instead of the whole state.
    pub fn take_delta(&mut self) -> StateChanges {
        let state = &self.state;
        let mut delta: StateChanges = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|key| {
                let value = state.get(&key).map(encode_entry);
                (key, value)
            })
            .collect();
        delta.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        delta
    }
}

/// Why a call into a UDF failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The instance trapped (panic, out of fuel, deadline, memory limit).
    Trap {
        /// Which kind of trap.
        kind: TrapKind,
        /// Details: wasmtime's message and the UDF's last stderr line.
        detail: String,
    },
    /// The UDF returned an error value.
    Udf {
        /// The UDF's message.
        message: String,
        /// The row it names, if any.
        row: Option<u32>,
    },
    /// `init` refused the stage's parameters.
    Init(String),
    /// The component could not be instantiated.
    Instantiate(String),
}

/// The most bytes of a row or of a UDF's message an error message shows.
pub const MAX_SHOWN: usize = 1024;

/// `text`, cut to at most `max` bytes (at a character boundary) with the
/// length of the rest said, so an error about a 50 MB row stays readable.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &text[..end], text.len() - end)
}

/// The kinds of trap a user needs to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// Fuel ran out: deterministic, so a replay traps at the same row.
    OutOfFuel,
    /// The wall-clock backstop fired.
    Deadline,
    /// Linear memory would have grown past the limit.
    Memory,
    /// Anything else: a panic, `unreachable`, out-of-bounds access...
    Other,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Trap { kind, detail } => {
                let what = match kind {
                    TrapKind::OutOfFuel => "exceeded its fuel budget",
                    TrapKind::Deadline => "exceeded its wall-clock deadline",
                    TrapKind::Memory => "exceeded its memory limit",
                    TrapKind::Other => "trapped",
                };
                write!(f, "{what}: {detail}")
            }
            CallError::Udf { message, row } => match row {
                Some(r) => write!(
                    f,
                    "returned an error at batch row {r}: {}",
                    clip(message, MAX_SHOWN)
                ),
                None => write!(f, "returned an error: {}", clip(message, MAX_SHOWN)),
            },
            CallError::Init(m) => write!(f, "refused its parameters in init: {m}"),
            CallError::Instantiate(m) => write!(f, "could not be instantiated: {m}"),
        }
    }
}
