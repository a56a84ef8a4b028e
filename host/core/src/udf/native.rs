//! UDFs written as native Rust closures: what the core's tests (and an
//! embedder without a Wasm runtime) run stages with.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;

use super::{
    Call, CallError, CallFailure, Fired, KeyGroups, KeyedState, KeyedStore, ModuleId,
    ModuleVersion, Signature, TimedOutput, TimerCall, Udf, UdfOutput,
};

/// What a native UDF gets for one call.
#[derive(Debug)]
pub struct NativeCall<'a> {
    /// The input batch (interval first).
    pub batch: &'a RecordBatch,
    /// The columns of `batch` it reads, in its signature's order.
    pub reads: &'a [usize],
    /// For a reducer: the rows' keys.
    pub keys: Option<&'a KeyGroups>,
    /// The keyed state before the call.
    pub state: &'a KeyedState,
}

/// What a native UDF returns: its output, and per key (its bytes) the state
/// names it sets (`Some`) or deletes (`None`), applied only when it returns
/// `Ok`.
pub type NativeResult = Result<(UdfOutput, Vec<StateWrite>), CallError>;

/// The writes of one call to one key's state.
pub type StateWrite = (Vec<u8>, BTreeMap<String, Option<Vec<u8>>>);

type NativeFn = dyn FnMut(NativeCall<'_>) -> NativeResult + Send;

/// What a native timed reducer's `on-cti` gets.
#[derive(Debug)]
pub struct NativeTimerCall<'a> {
    /// The CTI passing.
    pub cti: i64,
    /// The timers it fired (no longer in the state).
    pub fired: &'a Fired,
    /// The keyed state before the call.
    pub state: &'a KeyedState,
}

type NativeTimerFn =
    dyn FnMut(NativeTimerCall<'_>) -> Result<(TimedOutput, Vec<StateWrite>), CallError> + Send;

/// A UDF whose body is a Rust closure. Its module version is the SHA-256 of
/// its name, so two native UDFs of one name are one version.
pub struct NativeUdf {
    id: ModuleId,
    signature: Signature,
    state: KeyedStore,
    segment: (i64, u64),
    body: Box<NativeFn>,
    on_cti: Option<Box<NativeTimerFn>>,
}

impl std::fmt::Debug for NativeUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeUdf")
            .field("module", &self.id)
            .finish_non_exhaustive()
    }
}

impl NativeUdf {
    /// A UDF named `name` with `signature`, running `body` once per batch.
    pub fn new(
        name: &str,
        signature: Signature,
        body: impl FnMut(NativeCall<'_>) -> NativeResult + Send + 'static,
    ) -> Self {
        NativeUdf {
            id: ModuleId {
                version: ModuleVersion::of(name.as_bytes()),
                path: format!("native:{name}"),
            },
            signature,
            state: KeyedStore::default(),
            segment: (0, 0),
            body: Box::new(body),
            on_cti: None,
        }
    }

    /// Makes it a timed reducer whose `on-cti` runs `on_cti`. Its bodies set
    /// timers by writing a key's [`super::TIMERS`] ([`super::encode_timers`]).
    pub fn with_timers(
        mut self,
        on_cti: impl FnMut(NativeTimerCall<'_>) -> Result<(TimedOutput, Vec<StateWrite>), CallError>
        + Send
        + 'static,
    ) -> Self {
        self.on_cti = Some(Box::new(on_cti));
        self
    }
}

impl Udf for NativeUdf {
    fn module(&self) -> &ModuleId {
        &self.id
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn call(&mut self, call: Call<'_>) -> Result<UdfOutput, CallFailure> {
        if call.segment.is_some() {
            let first = call
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .filter(|a| !a.is_empty())
                .map_or(0, |a| a.value(0));
            self.segment = (first, call.segment.unwrap_or_default());
        }
        let (output, writes) = (self.body)(NativeCall {
            batch: call.batch,
            reads: call.reads,
            keys: call.keys.as_ref(),
            state: self.state.get(),
        })
        .map_err(CallFailure::Failed)?;
        self.state.apply(writes);
        Ok(output)
    }

    fn reset(&mut self) -> Result<(), CallError> {
        Ok(())
    }

    fn drain_logs(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn segment(&self) -> (i64, u64) {
        self.segment
    }

    fn resume_segment(&mut self, clock: i64, random: u64) {
        self.segment = (clock, random);
    }

    fn state(&mut self) -> &mut KeyedStore {
        &mut self.state
    }

    fn migrates(&self) -> bool {
        false
    }

    fn migrate(&mut self, _from: &str, _position: u64) -> Result<(), CallError> {
        Ok(())
    }

    fn timed(&self) -> bool {
        self.on_cti.is_some()
    }

    fn on_cti(&mut self, call: TimerCall<'_>) -> Result<TimedOutput, CallFailure> {
        let Some(on_cti) = self.on_cti.as_mut() else {
            return Err(CallFailure::Malformed("the UDF has no on-cti".into()));
        };
        self.segment = (call.cti, call.seed);
        let (output, writes) = on_cti(NativeTimerCall {
            cti: call.cti,
            fired: call.fired,
            state: self.state.get(),
        })
        .map_err(CallFailure::Failed)?;
        self.state.apply(writes);
        Ok(output)
    }
}
