//! A timed reducer's timers on the Wasm side: the `timers` import, which
//! writes a key's timers into the call's state overlay, and the `on-cti`
//! export, type-checked when the instance is made.

use wasmtime::Store;
use wasmtime::component::{self, Func};

use super::super::bindings::api::weir::udf::keys::Fired as WitFired;
use super::super::bindings::api::weir::udf::types::TimedOutput as WitTimedOutput;
use super::*;
use crate::udf::{TIMERS, TimedOutput, TimerCall, decode_timers, encode_timers};

impl HostCtx {
    /// The timers of the call's key group `group`, as its writes so far left them.
    fn group_timers(&self, group: u32) -> Option<Vec<i64>> {
        let g = group as usize;
        let key = self.overlay.keys.get(g)?;
        let pending = self.overlay.writes.get(g)?.get(TIMERS);
        Some(match pending {
            Some(Some(bytes)) => decode_timers(bytes),
            Some(None) => Vec::new(),
            None => self
                .state
                .get()
                .get(key.as_slice())
                .and_then(|names| names.get(TIMERS))
                .map(|b| decode_timers(b))
                .unwrap_or_default(),
        })
    }

    fn put_group_timers(&mut self, group: u32, at: Vec<i64>) {
        if let Some(w) = self.overlay.writes.get_mut(group as usize) {
            let value = (!at.is_empty()).then(|| encode_timers(&at));
            w.insert(TIMERS.to_string(), value);
        }
    }
}

impl api::weir::udf::timers::Host for HostCtx {
    fn set(&mut self, group: u32, at: i64) {
        if let Some(mut timers) = self.group_timers(group)
            && let Err(i) = timers.binary_search(&at)
        {
            timers.insert(i, at);
            self.put_group_timers(group, timers);
        }
    }

    fn cancel(&mut self, group: u32, at: i64) {
        if let Some(mut timers) = self.group_timers(group)
            && let Ok(i) = timers.binary_search(&at)
        {
            timers.remove(i);
            self.put_group_timers(group, timers);
        }
    }
}

/// The component's `on-cti`, if it exports one, checked against the
/// contract's type.
pub(super) fn timer_func(
    store: &mut Store<HostCtx>,
    instance: &component::Instance,
) -> wasmtime::Result<Option<Func>> {
    let Some(f) = instance.get_func(&mut *store, "on-cti") else {
        return Ok(None);
    };
    f.typed::<(i64, &WitFired), (Result<WitTimedOutput, UdfError>,)>(&*store)?;
    Ok(Some(f))
}

impl Instance {
    /// Calls `on-cti` with the timers that fired; state writes apply only
    /// if the call succeeds.
    pub(super) fn fire(&mut self, call: TimerCall<'_>) -> Result<TimedOutput, CallFailure> {
        let Some(f) = self.timer_call else {
            return Err(CallFailure::Failed(self.wrong_world("on-cti")));
        };
        let fired = call.fired;
        let keys: Vec<Vec<u8>> = (0..fired.keys.len())
            .map(|g| fired.keys.key(g).to_vec())
            .collect();
        let wit = WitFired {
            keys: KeyGroups {
                keys: VarWidth {
                    offsets: fired.keys.offsets.clone(),
                    data: fired.keys.data.clone(),
                },
                groups: fired.keys.groups.clone(),
            },
            at: fired.at.clone(),
        };
        self.prepare(fired.len(), Some((call.seed, call.cti)));
        self.open_overlay(keys);
        let typed = f
            .typed::<(i64, &WitFired), (Result<WitTimedOutput, UdfError>,)>(&self.store)
            .map_err(|e| CallFailure::Malformed(format!("on-cti has the wrong type: {e}")))?;
        let result = typed.call(&mut self.store, (call.cti, &wit)).map(|(r,)| r);
        let overlay = std::mem::take(&mut self.store.data_mut().overlay);
        let output = self
            .finish_call(result)
            .and_then(|r| r.map_err(udf_error))
            .map_err(CallFailure::Failed)?;
        let n = output.start.len();
        let writes = &self.signature.writes;
        if output.columns.len() != writes.len() {
            return Err(CallFailure::Malformed(format!(
                "on-cti returned {} columns, declared {}",
                output.columns.len(),
                writes.len()
            )));
        }
        let mut columns = Vec::with_capacity(writes.len());
        for (column, field) in output.columns.into_iter().zip(writes) {
            columns.push(from_wit_column(column, field, n).map_err(CallFailure::Malformed)?);
        }
        self.apply_overlay(overlay);
        Ok(TimedOutput {
            start: output.start,
            end: output.end,
            columns,
        })
    }
}
