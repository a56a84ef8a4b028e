//! One sandboxed UDF instance: a wasmtime store with fuel, an epoch deadline and
//! a memory limit, deterministic WASI, captured output and host-owned state.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{self, Func, ResourceTable, TypedFunc};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, Column, KeyGroups, Output, Param, Signature, UdfError, VarWidth, api};
use super::convert::{BatchRef, Lowered};
use super::determinism::{EventClock, SeededRandom};
use super::output::{CALL_CAPACITY, CallOutput};
use super::{EPOCH_TICK, Module, ModuleVersion, Runtime, World};
use crate::plan::ParamValueSpec;
use crate::store::StateChanges;

/// The largest linear memory any instance may have (the pool's slot size).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

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

/// Writes of the current reducer call, applied to the keyed state only if the
/// call succeeds: a trapped call leaves state exactly as it was.
#[derive(Debug, Default)]
pub struct StateOverlay {
    keys: Vec<Vec<u8>>,
    writes: Vec<BTreeMap<String, Option<Vec<u8>>>>,
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

/// The data of a UDF's store.
pub struct HostCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    logs: Vec<String>,
    state: KeyedState,
    overlay: StateOverlay,
}

impl WasiView for HostCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

const MAX_LOG_LINES_PER_CALL: usize = 1000;

impl api::weir::udf::log::Host for HostCtx {
    fn write(&mut self, level: api::weir::udf::log::Level, message: String) {
        if self.logs.len() < MAX_LOG_LINES_PER_CALL {
            self.logs.push(format!("[{level:?}] {message}"));
        }
    }
}

impl api::weir::udf::types::Host for HostCtx {}
impl api::weir::udf::keys::Host for HostCtx {}

impl api::weir::udf::state::Host for HostCtx {
    fn get(&mut self, group: u32, name: String) -> Option<Vec<u8>> {
        let g = group as usize;
        if let Some(pending) = self.overlay.writes.get(g).and_then(|w| w.get(&name)) {
            return pending.clone();
        }
        let key = self.overlay.keys.get(g)?;
        self.state.get(key.as_slice())?.get(&name).cloned()
    }
    fn put(&mut self, group: u32, name: String, value: Vec<u8>) {
        if let Some(w) = self.overlay.writes.get_mut(group as usize) {
            w.insert(name, Some(value));
        }
    }
    fn delete(&mut self, group: u32, name: String) {
        if let Some(w) = self.overlay.writes.get_mut(group as usize) {
            w.insert(name, None);
        }
    }
}

/// The world's per-batch export as a raw function, type-checked once against
/// [`BatchRef`] so that each call lowers Arrow's buffers directly.
#[derive(Clone, Copy)]
enum BatchCall {
    Process(Func),
    Reduce(Func),
    Evaluate(Func),
}

impl BatchCall {
    fn new(
        store: &mut Store<HostCtx>,
        instance: &component::Instance,
        world: World,
    ) -> wasmtime::Result<Self> {
        let export = |store: &mut Store<HostCtx>, name: &str| {
            instance
                .get_func(&mut *store, name)
                .ok_or_else(|| wasmtime::format_err!("the component exports no `{name}`"))
        };
        Ok(match world {
            World::Processor => {
                let f = export(store, "process")?;
                f.typed::<(&BatchRef<'static>,), (Result<Output, UdfError>,)>(&*store)?;
                BatchCall::Process(f)
            }
            World::Reducer => {
                let f = export(store, "reduce")?;
                f.typed::<(&BatchRef<'static>, &KeyGroups), (Result<Output, UdfError>,)>(&*store)?;
                BatchCall::Reduce(f)
            }
            World::Scalar => {
                let f = export(store, "evaluate")?;
                f.typed::<(&BatchRef<'static>,), (Result<Column, UdfError>,)>(&*store)?;
                BatchCall::Evaluate(f)
            }
        })
    }
}

enum Exports {
    Processor(bindings::processor::Processor),
    Reducer(bindings::reducer::Reducer),
    MigratingReducer(bindings::migrating_reducer::MigratingReducer),
    Scalar(bindings::scalar::Scalar),
}

/// What `init` returned.
#[derive(Debug, Clone)]
pub enum InitInfo {
    /// A processor's or reducer's signature.
    Rows(Signature),
    /// A scalar function's signature.
    Scalar(api::weir::udf::types::ScalarSignature),
}

/// A live, initialised UDF instance.
pub struct Instance {
    runtime: Arc<Runtime>,
    module: Module,
    stage: String,
    params: Vec<Param>,
    limits: Limits,
    store: Store<HostCtx>,
    exports: Exports,
    /// The world's per-batch export, called with borrowed buffers.
    batch_call: BatchCall,
    clock: EventClock,
    random: SeededRandom,
    stdout: CallOutput,
    stderr: CallOutput,
    info: InitInfo,
    /// Keys whose state changed since the last [`Instance::take_delta`].
    dirty: HashSet<Vec<u8>>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("stage", &self.stage)
            .field("module", &self.module.version)
            .finish()
    }
}

fn to_params(specs: &[ParamValueSpec]) -> Vec<Param> {
    specs
        .iter()
        .map(|p| Param {
            name: p.name.clone(),
            value: p.value.clone(),
        })
        .collect()
}

impl Instance {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        module: Module,
        stage: &str,
        params: &[ParamValueSpec],
        limits: Limits,
    ) -> Result<Self, CallError> {
        let params = to_params(params);
        let (store, (exports, batch_call), clock, random, stdout, stderr) =
            Self::instantiate(&runtime, &module, stage, &limits, KeyedState::new())?;
        let mut instance = Instance {
            runtime,
            module,
            stage: stage.to_string(),
            params,
            limits,
            store,
            exports,
            batch_call,
            clock,
            random,
            stdout,
            stderr,
            info: InitInfo::Scalar(api::weir::udf::types::ScalarSignature {
                args: Vec::new(),
                returns: api::weir::udf::types::Field {
                    name: String::new(),
                    ty: api::weir::udf::types::ColumnType::Int64,
                    nullable: false,
                },
            }),
            dirty: HashSet::new(),
        };
        instance.info = instance.init()?;
        Ok(instance)
    }

    #[allow(clippy::type_complexity)]
    fn instantiate(
        runtime: &Runtime,
        module: &Module,
        stage: &str,
        limits: &Limits,
        state: KeyedState,
    ) -> Result<
        (
            Store<HostCtx>,
            (Exports, BatchCall),
            EventClock,
            SeededRandom,
            CallOutput,
            CallOutput,
        ),
        CallError,
    > {
        let clock = EventClock::default();
        let random = SeededRandom::default();
        random.reseed(stage, 0);
        let stdout = CallOutput::default();
        let stderr = CallOutput::default();
        let mut seed = 0u128;
        for b in stage.as_bytes() {
            seed = seed
                .wrapping_mul(0x1000_0000_01b3)
                .wrapping_add(u128::from(*b));
        }
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(clock.clone())
            .monotonic_clock(clock.clone())
            .secure_random(random.clone())
            .insecure_random(random.clone())
            .insecure_random_seed(seed)
            .build();
        let ctx = HostCtx {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            logs: Vec::new(),
            state,
            overlay: StateOverlay::default(),
        };
        let mut store = Store::new(runtime.engine(), ctx);
        store.limiter(|ctx| &mut ctx.limits);
        store.epoch_deadline_trap();
        store
            .set_fuel(limits.fuel_per_call)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        store.set_epoch_deadline(deadline_ticks(limits.deadline));
        let linker = &runtime.linkers().linker;
        let fail = |e: wasmtime::Error| CallError::Instantiate(format!("{e:#}"));
        let instance = linker
            .instantiate(&mut store, &module.component)
            .map_err(fail)?;
        let exports = match module.world {
            World::Processor => Exports::Processor(
                bindings::processor::Processor::new(&mut store, &instance).map_err(fail)?,
            ),
            World::Reducer if module.migrates() => Exports::MigratingReducer(
                bindings::migrating_reducer::MigratingReducer::new(&mut store, &instance)
                    .map_err(fail)?,
            ),
            World::Reducer => Exports::Reducer(
                bindings::reducer::Reducer::new(&mut store, &instance).map_err(fail)?,
            ),
            World::Scalar => {
                Exports::Scalar(bindings::scalar::Scalar::new(&mut store, &instance).map_err(fail)?)
            }
        };
        let batch_call = BatchCall::new(&mut store, &instance, module.world).map_err(fail)?;
        Ok((store, (exports, batch_call), clock, random, stdout, stderr))
    }

    fn init(&mut self) -> Result<InitInfo, CallError> {
        self.prepare(0, Some((0, 0)));
        let params = self.params.clone();
        let result = match &self.exports {
            Exports::Processor(p) => p
                .call_init(&mut self.store, &params)
                .map(|r| r.map(InitInfo::Rows)),
            Exports::Reducer(r) => r
                .call_init(&mut self.store, &params)
                .map(|r| r.map(InitInfo::Rows)),
            Exports::MigratingReducer(r) => r
                .call_init(&mut self.store, &params)
                .map(|r| r.map(InitInfo::Rows)),
            Exports::Scalar(s) => s
                .call_init(&mut self.store, &params)
                .map(|r| r.map(InitInfo::Scalar)),
        };
        match self.finish_call(result)? {
            Ok(info) => Ok(info),
            Err(e) => Err(CallError::Init(e.message)),
        }
    }

    /// The module this instance runs.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The module's version.
    pub fn version(&self) -> &ModuleVersion {
        &self.module.version
    }

    /// What `init` returned.
    pub fn info(&self) -> &InitInfo {
        &self.info
    }

    /// Sets the call's fuel and deadline; with `segment = Some((position,
    /// event time))` also starts a segment of the input: clocks read that
    /// event time and random numbers restart from a seed of the stage and
    /// that position. Calls without it carry on the segment's clock and
    /// random sequence, so how a segment is cut into calls does not show.
    fn prepare(&mut self, rows: usize, segment: Option<(u64, i64)>) {
        let fuel = self
            .limits
            .fuel_per_call
            .saturating_add(self.limits.fuel_per_row.saturating_mul(rows as u64));
        // set_fuel only fails when fuel is not enabled, and it always is.
        let _ = self.store.set_fuel(fuel);
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.deadline));
        if let Some((position, event_time)) = segment {
            self.clock.set(event_time);
            self.random.reseed(&self.stage, position);
        }
    }

    fn finish_call<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, CallError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                let kind = match e.downcast_ref::<Trap>() {
                    Some(Trap::OutOfFuel) => TrapKind::OutOfFuel,
                    Some(Trap::Interrupt) => TrapKind::Deadline,
                    _ if format!("{e:?}").contains("growing memory") => TrapKind::Memory,
                    _ => TrapKind::Other,
                };
                let mut detail = match kind {
                    TrapKind::OutOfFuel => format!(
                        "fuel budget is {} units per call plus {} per row",
                        self.limits.fuel_per_call, self.limits.fuel_per_row
                    ),
                    TrapKind::Deadline => {
                        format!("deadline is {:?} per call", self.limits.deadline)
                    }
                    TrapKind::Memory => format!("limit is {} MiB", self.limits.memory_bytes >> 20),
                    TrapKind::Other => format!("{}", e.root_cause()),
                };
                if let Some(said) = panic_message(&self.stderr.peek()) {
                    detail.push_str(&format!("; UDF stderr: {}", clip(&said, MAX_SHOWN)));
                }
                Err(CallError::Trap { kind, detail })
            }
        }
    }

    /// Makes a fresh instance after a trap (a trapped instance cannot be entered
    /// again), keeping the host-owned state.
    pub fn reset(&mut self) -> Result<(), CallError> {
        let state = std::mem::take(&mut self.store.data_mut().state);
        let (store, (exports, batch_call), clock, random, stdout, stderr) = Self::instantiate(
            &self.runtime,
            &self.module,
            &self.stage,
            &self.limits,
            state,
        )?;
        self.store = store;
        self.exports = exports;
        self.batch_call = batch_call;
        self.clock = clock;
        self.random = random;
        self.stdout = stdout;
        self.stderr = stderr;
        self.init()?;
        Ok(())
    }

    /// Calls a per-batch export that takes only the batch (`process`,
    /// `evaluate`) and returns `result<R, udf-error>`.
    fn call_on_batch<R>(
        &mut self,
        f: Func,
        batch: &BatchRef<'_>,
    ) -> wasmtime::Result<Result<R, UdfError>>
    where
        R: component::Lift + Send + Sync + 'static,
    {
        // SAFETY: `BatchCall::new` type-checked `f` against these types (up to
        // lifetimes) when the instance was made.
        let f = unsafe { TypedFunc::<(&BatchRef<'_>,), (Result<R, UdfError>,)>::new_unchecked(f) };
        f.call(&mut self.store, (batch,)).map(|(r,)| r)
    }

    /// Runs a processor over one batch. With `segment = Some(position)` the
    /// batch starts a segment at that input position (it seeds randomness,
    /// and clocks read the start of the batch's first event); without, it
    /// carries on the current segment.
    pub fn process(
        &mut self,
        batch: &Lowered<'_>,
        segment: Option<u64>,
    ) -> Result<Output, CallError> {
        self.prepare(batch.rows(), segment.map(|p| (p, batch.first_start)));
        let result = match self.batch_call {
            BatchCall::Process(f) => self.call_on_batch(f, &batch.batch),
            _ => return Err(self.wrong_world("process")),
        };
        self.finish_call(result)?.map_err(udf_error)
    }

    /// Runs a reducer over one batch; state writes apply only if the call succeeds.
    pub fn reduce(
        &mut self,
        batch: &Lowered<'_>,
        keys: &KeyGroups,
        segment: Option<u64>,
    ) -> Result<Output, CallError> {
        self.prepare(batch.rows(), segment.map(|p| (p, batch.first_start)));
        let group_count = keys.keys.offsets.len().saturating_sub(1);
        let key_list = (0..group_count)
            .map(|g| {
                let (a, b) = (
                    keys.keys.offsets[g] as usize,
                    keys.keys.offsets[g + 1] as usize,
                );
                keys.keys.data.get(a..b).unwrap_or_default().to_vec()
            })
            .collect();
        self.open_overlay(key_list);
        let result = match self.batch_call {
            BatchCall::Reduce(f) => {
                // SAFETY: as in `call_on_batch`.
                let f = unsafe {
                    TypedFunc::<(&BatchRef<'_>, &KeyGroups), (Result<Output, UdfError>,)>::new_unchecked(f)
                };
                f.call(&mut self.store, (&batch.batch, keys)).map(|(r,)| r)
            }
            _ => return Err(self.wrong_world("reduce")),
        };
        let overlay = std::mem::take(&mut self.store.data_mut().overlay);
        let output = self.finish_call(result)?.map_err(udf_error)?;
        self.apply_overlay(overlay);
        Ok(output)
    }

    /// Whether the module converts state when it takes over (`migrate`).
    pub fn migrates(&self) -> bool {
        matches!(self.exports, Exports::MigratingReducer(_))
    }

    /// Calls the module's `migrate` over every key with state (a no-op for a
    /// module without one): `from` is the version it takes over from,
    /// `position` the stage's input position (it seeds randomness). Writes
    /// apply only if the call succeeds.
    pub fn migrate(&mut self, from: &str, position: u64) -> Result<(), CallError> {
        if !self.migrates() {
            return Ok(());
        }
        let key_list: Vec<Vec<u8>> = self.store.data().state.keys().cloned().collect();
        let mut offsets = Vec::with_capacity(key_list.len() + 1);
        let mut data = Vec::new();
        offsets.push(0u32);
        for k in &key_list {
            data.extend_from_slice(k);
            offsets.push(data.len() as u32);
        }
        let keys = KeyGroups {
            keys: VarWidth { offsets, data },
            groups: (0..key_list.len() as u32).collect(),
        };
        self.prepare(key_list.len(), Some((position, 0)));
        self.open_overlay(key_list);
        let result = match &self.exports {
            Exports::MigratingReducer(r) => r.call_migrate(&mut self.store, from, &keys),
            _ => return Err(self.wrong_world("migrate")),
        };
        let overlay = std::mem::take(&mut self.store.data_mut().overlay);
        self.finish_call(result)?.map_err(udf_error)?;
        self.apply_overlay(overlay);
        Ok(())
    }

    /// Starts collecting the state writes of a call over `keys` (its groups).
    fn open_overlay(&mut self, keys: Vec<Vec<u8>>) {
        let groups = keys.len();
        self.store.data_mut().overlay = StateOverlay {
            keys,
            writes: vec![BTreeMap::new(); groups],
        };
    }

    /// Applies the writes of a call that succeeded to the keyed state.
    fn apply_overlay(&mut self, overlay: StateOverlay) {
        let state = &mut self.store.data_mut().state;
        for (key, writes) in overlay.keys.into_iter().zip(overlay.writes) {
            if writes.is_empty() {
                continue;
            }
            if !self.dirty.contains(&key) {
                self.dirty.insert(key.clone());
            }
            let apply = |names: &mut BTreeMap<String, Vec<u8>>| {
                for (name, value) in writes {
                    match value {
                        Some(v) => names.insert(name, v),
                        None => names.remove(&name),
                    };
                }
            };
            // A key with nothing left is no key: restored state would not have it.
            match state.entry(key) {
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
        }
    }

    /// Evaluates a scalar function over one batch of argument rows.
    pub fn evaluate(
        &mut self,
        batch: &Lowered<'_>,
        segment: Option<u64>,
    ) -> Result<Column, CallError> {
        self.prepare(batch.rows(), segment.map(|p| (p, batch.first_start)));
        let result = match self.batch_call {
            BatchCall::Evaluate(f) => self.call_on_batch(f, &batch.batch),
            _ => return Err(self.wrong_world("evaluate")),
        };
        self.finish_call(result)?.map_err(udf_error)
    }

    fn wrong_world(&self, call: &str) -> CallError {
        CallError::Instantiate(format!(
            "module {} is a {} component and has no `{call}`",
            self.module.version,
            self.module.world.name()
        ))
    }

    /// The host-owned keyed state (reducers).
    pub fn state(&self) -> &KeyedState {
        &self.store.data().state
    }

    /// Replaces the host-owned keyed state (restoring a snapshot); nothing is
    /// changed since.
    pub fn set_state(&mut self, state: KeyedState) {
        self.store.data_mut().state = state;
        self.dirty.clear();
    }

    /// Moves `other`'s keyed state, and which keys changed, into this
    /// instance (a patch from `other`'s module to this one).
    /// The current segment's clock and random state (see [`Instance::resume_segment`]).
    pub fn segment(&self) -> (i64, u64) {
        (self.clock.get(), self.random.state())
    }

    /// Carries on a segment whose clock and random state a snapshot kept.
    pub fn resume_segment(&mut self, clock: i64, random: u64) {
        self.clock.set(clock);
        self.random.set_state(random);
    }

    /// Takes over `other`'s keyed state.
    pub fn adopt_state(&mut self, other: &mut Instance) {
        self.store.data_mut().state = std::mem::take(&mut other.store.data_mut().state);
        self.dirty = std::mem::take(&mut other.dirty);
    }

    /// Forgets which keys changed (state that is not checkpointed).
    pub fn forget_delta(&mut self) {
        self.dirty.clear();
    }

    /// The keys changed since the last call, each with its encoded entry
    /// ([`encode_entry`]) or `None` when it no longer exists: what a
    /// checkpoint writes, instead of the whole state.
    pub fn take_delta(&mut self) -> StateChanges {
        let state = &self.store.data().state;
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

    /// Log lines written since the last call: `log` imports, stdout and stderr.
    pub fn drain_logs(&mut self) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.store.data_mut().logs);
        for (output, stream) in [(&self.stdout, "stdout"), (&self.stderr, "stderr")] {
            if let Some((text, dropped)) = output.take() {
                lines.extend(text.lines().map(|l| format!("[{stream}] {l}")));
                if dropped > 0 {
                    lines.push(format!(
                        "[{stream}] ({dropped} more bytes dropped: a call keeps {} MiB)",
                        CALL_CAPACITY >> 20
                    ));
                }
            }
        }
        lines
    }
}

/// The useful part of a UDF's stderr after a trap: Rust's panic line and its
/// message, else the last line that is not a hint.
fn panic_message(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        return Some(lines[i..(i + 2).min(lines.len())].join(" "));
    }
    lines.last().map(|l| l.to_string())
}

fn udf_error(e: api::weir::udf::types::UdfError) -> CallError {
    CallError::Udf {
        message: e.message,
        row: e.row,
    }
}

fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}
