//! A user-defined aggregate on the Wasm side: an instance of a component of
//! world `aggregate`, run by a windowed aggregate through
//! [`UserAggregate`]. The accumulators belong to the operator; each call
//! takes them in and gives them back, so the instance keeps nothing.

use arrow_array::{Array, ArrayRef, RecordBatch};

use super::*;
use weir_core::temporal::UserAggregate;

/// Checks the `accumulate` export against the borrowed types it is called with.
pub(super) fn check(store: &mut Store<HostCtx>, f: Func) -> wasmtime::Result<()> {
    f.typed::<(&[Vec<u8>], &BatchRef<'static>, &[u32]), (Result<Vec<Vec<u8>>, UdfError>,)>(
        &*store,
    )?;
    Ok(())
}

/// A running user-defined aggregate component.
pub struct AggregateInstance {
    instance: Instance,
    lowering: Lowering,
    /// The argument columns of the batches it gets (after the interval).
    columns: Vec<usize>,
}

impl fmt::Debug for AggregateInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.instance.fmt(f)
    }
}

impl AggregateInstance {
    /// An instance of `module` (world `aggregate`), called `name` in the
    /// query, initialised with `params`.
    pub fn new(
        runtime: &Arc<Runtime>,
        module: &Module,
        name: &str,
        params: &[ParamValueSpec],
        limits: Limits,
    ) -> Result<AggregateInstance, CallError> {
        if module.world != World::Aggregate {
            return Err(CallError::Instantiate(format!(
                "module {} is a {} component, not an aggregate",
                module.version,
                module.world.name()
            )));
        }
        let instance = runtime.instantiate(module, name, params, limits)?;
        let columns = (2..2 + instance.signature.reads.len()).collect();
        Ok(AggregateInstance {
            instance,
            lowering: Lowering::default(),
            columns,
        })
    }

    /// The arguments it takes (`reads`) and its result (`writes[0]`).
    pub fn signature(&self) -> &Signature {
        &self.instance.signature
    }

    /// A call's outcome; a trapped instance is made afresh for the next.
    fn outcome<T>(&mut self, result: wasmtime::Result<Result<T, UdfError>>) -> Result<T, String> {
        let module = self.instance.module.version.short().to_string();
        let result = match self.instance.finish_call(result) {
            Ok(r) => r.map_err(udf_error),
            Err(e) => {
                // A trapped instance cannot be entered again.
                let _ = self.instance.reset();
                Err(e)
            }
        };
        // A windowed aggregate has no log stream: its lines are let go.
        self.instance.logs();
        result.map_err(|e| format!("module {module} {e}"))
    }

    /// Sets the call's fuel: a row's worth per row and per 64 bytes of the
    /// accumulators it carries (decoding and re-encoding them is work too).
    /// Every call starts a segment at the same place: clocks and random
    /// numbers read the same in every call, so how rows are cut into calls
    /// (batches, restarts, partitions) cannot change a result.
    fn prepare(&mut self, rows: usize, accumulators: &[&[Vec<u8>]]) {
        let bytes: usize = accumulators
            .iter()
            .flat_map(|a| a.iter())
            .map(Vec::len)
            .sum();
        self.instance.prepare(rows + bytes / 64, Some((0, 0)));
    }
}

impl UserAggregate for AggregateInstance {
    fn accumulate(
        &mut self,
        accumulators: &[Vec<u8>],
        args: &RecordBatch,
        groups: &[u32],
    ) -> Result<Vec<Vec<u8>>, String> {
        let BatchCall::Accumulate(f) = self.instance.batch_call else {
            return Err(self.instance.wrong_world("accumulate").to_string());
        };
        let mut lowering = std::mem::take(&mut self.lowering);
        let reads = std::mem::take(&mut self.instance.signature.reads);
        let result = match lowering.batch(args, &reads, &self.columns, false) {
            Ok(wit) => {
                self.prepare(wit.rows(), &[accumulators]);
                // SAFETY: `check` type-checked `f` against these types (up to
                // lifetimes) when the instance was made.
                let f = unsafe {
                    TypedFunc::<
                        (&[Vec<u8>], &BatchRef<'_>, &[u32]),
                        (Result<Vec<Vec<u8>>, UdfError>,),
                    >::new_unchecked(f)
                };
                Ok(
                    f.call(&mut self.instance.store, (accumulators, &wit.batch, groups))
                        .map(|(r,)| r),
                )
            }
            Err(e) => Err(e),
        };
        self.instance.signature.reads = reads;
        self.lowering = lowering;
        self.outcome(result?)
    }

    fn merge(&mut self, into: &[Vec<u8>], from: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
        self.prepare(into.len(), &[into, from]);
        let result = match &self.instance.exports {
            Exports::Aggregate(a) => a.call_merge(&mut self.instance.store, into, from),
            _ => return Err(self.instance.wrong_world("merge").to_string()),
        };
        self.outcome(result)
    }

    fn finish(&mut self, accumulators: &[Vec<u8>]) -> Result<ArrayRef, String> {
        self.prepare(accumulators.len(), &[accumulators]);
        let result = match &self.instance.exports {
            Exports::Aggregate(a) => a.call_finish(&mut self.instance.store, accumulators),
            _ => return Err(self.instance.wrong_world("finish").to_string()),
        };
        let column = self.outcome(result)?;
        let Some(field) = self.instance.signature.writes.first() else {
            return Err("its signature names no result".into());
        };
        let array = from_wit_column(column, field, accumulators.len()).map_err(|e| {
            format!(
                "module {} finish: {e}",
                self.instance.module.version.short()
            )
        })?;
        debug_assert_eq!(array.len(), accumulators.len());
        Ok(array)
    }
}
