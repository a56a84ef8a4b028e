//! One sandboxed UDF instance: a wasmtime store with fuel, an epoch deadline and
//! a memory limit, deterministic WASI, captured output and host-owned state.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{self, Func, ResourceTable, TypedFunc};
use wasmtime::{Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, Column, KeyGroups, Output, Param, UdfError, VarWidth, api};
use super::convert::{BatchRef, Lowered, Lowering, from_wit_column};
use super::determinism::{EventClock, SeededRandom};
use super::output::{CALL_CAPACITY, CallOutput};
use super::{EPOCH_TICK, Module, ModuleVersion, Runtime, World};
use crate::plan::ParamValueSpec;
use crate::udf::{Call, CallFailure, ModuleId, OutputColumn, Signature, Udf, UdfOutput};
pub use crate::udf::{
    CallError, KeyedState, KeyedStore, Limits, MAX_SHOWN, TrapKind, clip, decode_entry,
    encode_entry,
};

mod aggregate;
mod limiter;
mod timers;

pub use aggregate::AggregateInstance;

use limiter::Limiter;

/// The largest linear memory any instance may have (the pool's slot size).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Writes of the current reducer call, applied to the keyed state only if the
/// call succeeds: a trapped call leaves state exactly as it was.
#[derive(Debug, Default)]
pub struct StateOverlay {
    keys: Vec<Vec<u8>>,
    writes: Vec<BTreeMap<String, Option<Vec<u8>>>>,
}

/// The data of a UDF's store.
pub struct HostCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    logs: Vec<String>,
    state: KeyedStore,
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

impl HostCtx {
    /// A state write to the name timers are kept under, which only the
    /// `timers` interface may change: left out, with a line in the log.
    fn reserved(&mut self) {
        if self.logs.len() < MAX_LOG_LINES_PER_CALL {
            self.logs.push(
                "[Warn] a state write to the name timers are kept under was left out; use the timers interface".into(),
            );
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
        self.state.get().get(key.as_slice())?.get(&name).cloned()
    }
    fn put(&mut self, group: u32, name: String, value: Vec<u8>) {
        if name == crate::udf::TIMERS {
            return self.reserved();
        }
        if let Some(w) = self.overlay.writes.get_mut(group as usize) {
            w.insert(name, Some(value));
        }
    }
    fn delete(&mut self, group: u32, name: String) {
        if name == crate::udf::TIMERS {
            return self.reserved();
        }
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
    Accumulate(Func),
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
            World::Aggregate => {
                let f = export(store, "accumulate")?;
                aggregate::check(store, f)?;
                BatchCall::Accumulate(f)
            }
        })
    }
}

enum Exports {
    Processor(bindings::processor::Processor),
    Reducer(bindings::reducer::Reducer),
    MigratingReducer(bindings::migrating_reducer::MigratingReducer),
    Scalar(bindings::scalar::Scalar),
    Aggregate(bindings::aggregate::Aggregate),
}

/// What `init` returned: what the UDF reads and writes. A scalar function
/// reads its arguments and writes one column (its result), carrying the
/// input's columns over.
fn signature_of(
    init: Result<bindings::Signature, api::weir::udf::types::ScalarSignature>,
) -> Signature {
    let fields =
        |fields: Vec<bindings::Field>| fields.into_iter().map(bindings::host_field).collect();
    match init {
        Ok(sig) => Signature {
            reads: fields(sig.reads),
            reads_interval: sig.reads_interval,
            writes: fields(sig.writes),
            passthrough: sig.passthrough,
        },
        Err(scalar) => Signature {
            reads: fields(scalar.args),
            reads_interval: false,
            writes: vec![bindings::host_field(scalar.returns)],
            passthrough: true,
        },
    }
}

/// A live, initialised UDF instance.
pub struct Instance {
    runtime: Arc<Runtime>,
    module: Module,
    id: ModuleId,
    stage: String,
    params: Vec<Param>,
    limits: Limits,
    store: Store<HostCtx>,
    exports: Exports,
    /// The world's per-batch export, called with borrowed buffers.
    batch_call: BatchCall,
    /// A timed reducer's `on-cti`.
    timer_call: Option<Func>,
    /// The fuel the current call was given, and what all calls consumed.
    fuel: (u64, u64),
    clock: EventClock,
    random: SeededRandom,
    stdout: CallOutput,
    stderr: CallOutput,
    signature: Signature,
    /// Scratch buffers for handing batches over, reused between calls.
    lowering: Lowering,
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
            value: bindings::wit_param(&p.value),
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
        let (store, (exports, batch_call, timer_call), clock, random, stdout, stderr) =
            Self::instantiate(&runtime, &module, stage, &limits, KeyedStore::default())?;
        let id = ModuleId {
            version: module.version.clone(),
            path: module.path.clone(),
        };
        let mut instance = Instance {
            runtime,
            module,
            id,
            stage: stage.to_string(),
            params,
            limits,
            store,
            exports,
            batch_call,
            timer_call,
            fuel: (0, 0),
            clock,
            random,
            stdout,
            stderr,
            signature: Signature {
                reads: Vec::new(),
                reads_interval: false,
                writes: Vec::new(),
                passthrough: false,
            },
            lowering: Lowering::default(),
        };
        instance.signature = instance.init()?;
        Ok(instance)
    }

    #[allow(clippy::type_complexity)]
    fn instantiate(
        runtime: &Runtime,
        module: &Module,
        stage: &str,
        limits: &Limits,
        state: KeyedStore,
    ) -> Result<
        (
            Store<HostCtx>,
            (Exports, BatchCall, Option<Func>),
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
            limits: Limiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .trap_on_grow_failure(true)
                    .build(),
                memory: 0,
            },
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
            World::Aggregate => Exports::Aggregate(
                bindings::aggregate::Aggregate::new(&mut store, &instance).map_err(fail)?,
            ),
        };
        let batch_call = BatchCall::new(&mut store, &instance, module.world).map_err(fail)?;
        let timer_call = timers::timer_func(&mut store, &instance).map_err(fail)?;
        Ok((
            store,
            (exports, batch_call, timer_call),
            clock,
            random,
            stdout,
            stderr,
        ))
    }

    fn init(&mut self) -> Result<Signature, CallError> {
        self.prepare(0, Some((0, 0)));
        let params = self.params.clone();
        let result = match &self.exports {
            Exports::Processor(p) => p.call_init(&mut self.store, &params).map(|r| r.map(Ok)),
            Exports::Reducer(r) => r.call_init(&mut self.store, &params).map(|r| r.map(Ok)),
            Exports::MigratingReducer(r) => {
                r.call_init(&mut self.store, &params).map(|r| r.map(Ok))
            }
            Exports::Scalar(s) => s.call_init(&mut self.store, &params).map(|r| r.map(Err)),
            Exports::Aggregate(a) => a.call_init(&mut self.store, &params).map(|r| r.map(Err)),
        };
        match self.finish_call(result)? {
            Ok(init) => Ok(signature_of(init)),
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
        self.fuel.0 = fuel;
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.deadline));
        if let Some((position, event_time)) = segment {
            self.clock.set(event_time);
            self.random.reseed(&self.stage, position);
        }
    }

    fn finish_call<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, CallError> {
        let left = self.store.get_fuel().unwrap_or(0);
        self.fuel.1 = self.fuel.1.saturating_add(self.fuel.0.saturating_sub(left));
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
        let (store, (exports, batch_call, timer_call), clock, random, stdout, stderr) =
            Self::instantiate(
                &self.runtime,
                &self.module,
                &self.stage,
                &self.limits,
                state,
            )?;
        self.store = store;
        self.exports = exports;
        self.batch_call = batch_call;
        self.timer_call = timer_call;
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

    /// Calls the module's `migrate` over every key with state (a no-op for a
    /// module without one): `from` is the version it takes over from,
    /// `position` the stage's input position (it seeds randomness). Writes
    /// apply only if the call succeeds.
    fn migrate_state(&mut self, from: &str, position: u64) -> Result<(), CallError> {
        if !self.migrates() {
            return Ok(());
        }
        let key_list: Vec<Vec<u8>> = self.store.data().state.get().keys().cloned().collect();
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
        self.store
            .data_mut()
            .state
            .apply(overlay.keys.into_iter().zip(overlay.writes));
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

    /// Log lines written since the last call: `log` imports, stdout and stderr.
    fn logs(&mut self) -> Vec<String> {
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

impl Udf for Instance {
    fn module(&self) -> &ModuleId {
        &self.id
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn call(&mut self, call: Call<'_>) -> Result<UdfOutput, CallFailure> {
        // Both are only read during the call, which needs `self` mutably.
        let mut lowering = std::mem::take(&mut self.lowering);
        let signature = std::mem::take(&mut self.signature);
        let result = self.call_lowered(&mut lowering, &signature, call);
        self.lowering = lowering;
        self.signature = signature;
        result
    }

    fn reset(&mut self) -> Result<(), CallError> {
        Instance::reset(self)
    }

    fn drain_logs(&mut self) -> Vec<String> {
        self.logs()
    }

    fn segment(&self) -> (i64, u64) {
        (self.clock.get(), self.random.state())
    }

    fn resume_segment(&mut self, clock: i64, random: u64) {
        self.clock.set(clock);
        self.random.set_state(random);
    }

    fn state(&mut self) -> &mut KeyedStore {
        &mut self.store.data_mut().state
    }

    fn migrates(&self) -> bool {
        matches!(self.exports, Exports::MigratingReducer(_))
    }

    fn migrate(&mut self, from: &str, position: u64) -> Result<(), CallError> {
        self.migrate_state(from, position)
    }

    fn timed(&self) -> bool {
        self.timer_call.is_some()
    }

    fn usage(&self) -> crate::udf::Usage {
        crate::udf::Usage {
            fuel: self.fuel.1,
            memory_bytes: self.store.data().limits.memory as u64,
        }
    }

    fn on_cti(
        &mut self,
        call: crate::udf::TimerCall<'_>,
    ) -> Result<crate::udf::TimedOutput, CallFailure> {
        self.fire(call)
    }
}

impl Instance {
    /// One call: the batch's read columns lowered into WIT buffers, the
    /// world's export called, its written columns lifted back into Arrow.
    fn call_lowered(
        &mut self,
        lowering: &mut Lowering,
        signature: &Signature,
        call: Call<'_>,
    ) -> Result<UdfOutput, CallFailure> {
        let wit = lowering
            .batch(
                call.batch,
                &signature.reads,
                call.reads,
                signature.reads_interval,
            )
            .map_err(CallFailure::Malformed)?;
        let rows = wit.rows();
        let output = match self.module.world {
            World::Processor => self.process(&wit, call.segment),
            World::Reducer => {
                let keys = call.keys.unwrap_or_default();
                let keys = KeyGroups {
                    keys: VarWidth {
                        offsets: keys.offsets,
                        data: keys.data,
                    },
                    groups: keys.groups,
                };
                self.reduce(&wit, &keys, call.segment)
            }
            World::Scalar => self.evaluate(&wit, call.segment).map(|column| Output {
                parents: (0..rows as u32).collect(),
                columns: vec![bindings::OutputColumn::Written(column)],
            }),
            World::Aggregate => Err(self.wrong_world("process")),
        }
        .map_err(CallFailure::Failed)?;
        let writes = &signature.writes;
        if output.columns.len() != writes.len() {
            return Err(CallFailure::Malformed(format!(
                "returned {} columns, declared {}",
                output.columns.len(),
                writes.len()
            )));
        }
        let n = output.parents.len();
        let mut columns = Vec::with_capacity(writes.len());
        for (column, field) in output.columns.into_iter().zip(writes) {
            columns.push(match column {
                bindings::OutputColumn::Written(c) => OutputColumn::Written(
                    from_wit_column(c, field, n).map_err(CallFailure::Malformed)?,
                ),
                bindings::OutputColumn::Input(i) => OutputColumn::Input(i),
            });
        }
        Ok(UdfOutput {
            parents: output.parents,
            columns,
        })
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
