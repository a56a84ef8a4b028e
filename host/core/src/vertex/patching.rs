//! A UDF vertex's hot patching: its timeline replayed, accepted changes
//! applied at CTIs, and a trapping version rolled back.

use super::*;
use crate::patch::extends;

impl Vertex {
    /// Makes a UDF vertex patchable: `timeline` is its durable timeline (the
    /// snapshot it was loaded from says how much of it is applied, including
    /// which runtime filters are in effect), `load` builds its stage at
    /// another module version.
    pub fn with_patching(
        mut self,
        timeline: Timeline,
        load: StageLoader,
    ) -> Result<Vertex, VertexError> {
        if let Operator::Udf(stage) = &mut self.operator {
            let mut filters = Vec::new();
            for text in timeline.filters(self.at.patches as usize) {
                filters.push(compile_filter(&self.name, text, &self.schema)?);
            }
            stage.set_filters(filters);
            self.patching = Some(Patching {
                timeline,
                load,
                pending: VecDeque::new(),
                refused: None,
                written: (0, 0),
                next_match: 0,
                superseded: Vec::new(),
                gated: false,
            });
        }
        Ok(self)
    }

    /// Applies no live request while the vertex writes again the output
    /// its streams hold below seqs `output` and `dead` (its dead letters;
    /// see [`Vertex::schedule`]).
    pub fn hold_requests_below(&mut self, output: u64, dead: u64) {
        if let Some(p) = self.patching.as_mut() {
            p.hold_below(output, dead);
        }
    }

    /// Applies no live request until the host says how far the copies
    /// other members made of its output hold it ([`Vertex::copies_hold`]):
    /// a vertex that another instance ran before (on a member lost or
    /// drained) may be behind what readers there already read of it.
    pub fn await_copies(&mut self) {
        if let Some(p) = self.patching.as_mut() {
            p.gated = true;
        }
    }

    /// The copies other members made of its output and dead letters hold
    /// them below these seqs: a live request waits until the vertex has
    /// written that far (`None`: not every copy has said; requests wait).
    pub fn copies_hold(&mut self, at: Option<(u64, u64)>) {
        let Some(p) = self.patching.as_mut() else {
            return;
        };
        p.gated = at.is_none();
        if let Some((output, dead)) = at {
            p.hold_below(output, dead);
        }
    }

    /// Queues `request` (to module `version`, full SHA-256 hex, for a module
    /// change) for the vertex's next CTI, once it has replayed its whole
    /// timeline and writes past what its stream held when it started;
    /// requests queued before it are applied first.
    pub fn schedule(&mut self, request: Requested) {
        if let Some(p) = self.patching.as_mut()
            && !p.pending.iter().any(|r| r.id == request.id)
        {
            p.pending.push_back(request);
        }
        self.supersede();
    }

    /// Settles the queued requests that the timeline's switches not yet
    /// applied already made, oldest first: a request queued before a
    /// snapshot that an instance elsewhere went on to make (recorded in
    /// the timeline this vertex took over) is not made twice.
    fn supersede(&mut self) {
        let Some(p) = self.patching.as_mut() else {
            return;
        };
        let made = |r: &Requested, s: &Patch| {
            r.change == s.change && (!r.change.is_module() || r.version == s.version)
        };
        let switches = &p.timeline.patches;
        let mut from = p.next_match.max(self.at.patches as usize);
        while let Some(front) = p.pending.front() {
            let Some(at) = (from..switches.len()).find(|&i| made(front, &switches[i])) else {
                break;
            };
            p.superseded.push(front.id);
            p.pending.pop_front();
            from = at + 1;
        }
        p.next_match = from;
    }

    /// Takes the switches of `patches`, a timeline another instance of this
    /// vertex recorded, past the ones this one has: each is made at the
    /// position recorded, as in a replay. Refused when `patches` does not
    /// go on from this vertex's timeline, or when a new switch lies where
    /// this vertex has already read past (its output there differs).
    pub fn follow(&mut self, patches: &[Patch]) -> Result<(), VertexError> {
        let (Some(p), Operator::Udf(stage)) = (self.patching.as_mut(), &self.operator) else {
            return Ok(());
        };
        let have = &p.timeline.patches;
        if extends(have, patches) {
            return Ok(());
        }
        let diverged = |message: String| VertexError::Diverged {
            vertex: self.name.clone(),
            message,
        };
        if !extends(patches, have) {
            return Err(diverged(format!(
                "its patch timeline ({} changes) is not the beginning of the one recorded by the vertex ({} changes)",
                have.len(),
                patches.len()
            )));
        }
        let position = stage.position();
        for next in &patches[have.len()..] {
            // At a later CTI, or at this very CTI with no row read since.
            let ahead = next.ctis > self.at.ctis
                || (next.ctis == self.at.ctis && next.position == position);
            if !ahead {
                return Err(diverged(format!(
                    "the vertex recorded {} (module {}) at input position {} after {} CTIs, which this instance passed (input position {position}, {} CTIs)",
                    next.change.describe(),
                    short_version(&next.version),
                    next.position,
                    next.ctis,
                    self.at.ctis
                )));
            }
        }
        p.timeline.patches.extend_from_slice(&patches[have.len()..]);
        self.supersede();
        Ok(())
    }

    /// The timeline's switches (none for a vertex without a UDF).
    pub fn switches(&self) -> &[Patch] {
        self.patching
            .as_ref()
            .map_or(&[], |p| p.timeline.patches.as_slice())
    }

    /// Whether requested changes are waiting, and why the last one was refused.
    pub fn patch_state(&self) -> (bool, Option<String>) {
        self.patching.as_ref().map_or((false, None), |p| {
            (!p.pending.is_empty(), p.refused.clone())
        })
    }

    /// Where the vertex made the latest change of its timeline it applied:
    /// (input position, CTIs written).
    pub fn last_switch(&self) -> Option<(u64, u64)> {
        let p = self.patching.as_ref()?;
        let applied = (self.at.patches as usize).checked_sub(1)?;
        p.timeline
            .patches
            .get(applied)
            .map(|c| (c.position, c.ctis))
    }

    /// Rows dropped by runtime filters so far.
    pub fn filtered(&self) -> u64 {
        match &self.operator {
            Operator::Udf(stage) => stage.stats.filtered,
            _ => 0,
        }
    }

    /// The runtime filters in effect (they change only with the timeline).
    pub fn filter_texts(&self) -> Vec<String> {
        match &self.operator {
            Operator::Udf(stage) => stage
                .filters()
                .iter()
                .map(|f| f.text().to_string())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Makes `change` to the stage: a new build at `version`, which takes
    /// over its position, counts, filters and keyed state; or a filter added
    /// or removed.
    pub(super) fn apply_change(
        &mut self,
        version: &str,
        change: &Change,
    ) -> Result<(), VertexError> {
        let (Some(patching), Operator::Udf(old)) = (self.patching.as_mut(), &mut self.operator)
        else {
            return Ok(());
        };
        match change {
            Change::FilterAdd(text) => {
                let filter = compile_filter(&self.name, text, &self.schema)?;
                old.filters_mut().push(filter);
            }
            Change::FilterRemove(text) => old.filters_mut().retain(|f| f.text() != text),
            _ => {
                let mut new =
                    (patching.load)(version).map_err(|e| VertexError::Stage(Box::new(e)))?;
                new.adopt(old);
                if let Err(e) = new.migrate(&old.module().version) {
                    // The old version stays, with everything it had.
                    old.adopt(&mut new);
                    return Err(VertexError::Stage(Box::new(e)));
                }
                self.producer = format!("stage `{}` module {}", self.name, new.module().version);
                self.at.module = Some(new.module().version.to_string());
                **old = new;
            }
        }
        Ok(())
    }

    /// Applies the timeline's entries due at the stage's position: those
    /// recorded at or before it (before the batch that starts there).
    /// Refused when one lies where the stage already read past.
    pub(super) fn catch_up(&mut self) -> Result<(), VertexError> {
        loop {
            let (Some(patching), Operator::Udf(stage)) = (&self.patching, &self.operator) else {
                return Ok(());
            };
            let Some(next) = patching.timeline.patches.get(self.at.patches as usize) else {
                return Ok(());
            };
            // Recorded at a later input position, or at this one after
            // more CTIs (a change made as a CTI passed applies after it).
            if next.position > stage.position() || next.ctis > self.at.ctis {
                return Ok(());
            }
            // Passed without being made: the rows since were taken by the
            // version before it, and would differ from the recorded run's.
            if next.position < stage.position() {
                return Err(VertexError::Diverged {
                    vertex: self.name.clone(),
                    message: format!(
                        "its timeline records {} (module {}) at input position {} after {} CTIs, which this instance read past without making it (input position {}, {} CTIs); its output from there would differ from the recorded run's",
                        next.change.describe(),
                        short_version(&next.version),
                        next.position,
                        next.ctis,
                        stage.position(),
                        self.at.ctis
                    ),
                });
            }
            let (version, change) = (next.version.clone(), next.change.clone());
            self.apply_change(&version, &change)?;
            self.at.patches += 1;
        }
    }

    /// Appends `change` at the stage's position to the timeline and applies it.
    pub(super) fn record(
        &mut self,
        version: String,
        change: Change,
        fx: &mut Effects,
    ) -> Result<(), VertexError> {
        let (position, current) = match &self.operator {
            Operator::Udf(stage) => (stage.position(), stage.module().version.hex().to_string()),
            _ => return Ok(()),
        };
        // A filter change keeps the module in use now.
        let version = if change.is_module() { version } else { current };
        self.apply_change(&version, &change)?;
        let Some(patching) = self.patching.as_mut() else {
            return Ok(());
        };
        patching.timeline.patches.push(Patch {
            position,
            ctis: self.at.ctis,
            version,
            change,
            at_ms: now_ms(),
        });
        self.at.patches += 1;
        fx.timeline = Some(patching.timeline.clone());
        Ok(())
    }

    /// At a CTI: applies a live request once the timeline is replayed.
    pub(super) fn apply_pending(&mut self, fx: &mut Effects) {
        let Some(patching) = self.patching.as_mut() else {
            return;
        };
        let made = patching.superseded.drain(..).map(|id| (id, None));
        fx.settled.extend(made);
        if self.at.finished
            || patching.timeline.patches.len() as u64 != self.at.patches
            || patching.gated
            || self.at.output < patching.written.0
            || self.at.dead < patching.written.1
        {
            return;
        }
        let waiting: Vec<Requested> = patching.pending.drain(..).collect();
        for request in waiting {
            let Requested {
                id,
                version,
                change,
                ..
            } = request;
            match self.record(version.clone(), change.clone(), fx) {
                Ok(()) => fx.settled.push((id, None)),
                Err(e) => {
                    tracing::error!(vertex = %self.name, "{} ({}) not applied: {e}", change.describe(), short_version(&version));
                    if let Some(p) = self.patching.as_mut() {
                        p.refused = Some(e.to_string());
                    }
                    fx.settled.push((id, Some(e.to_string())));
                }
            }
        }
    }

    /// Runs the UDF stage on a batch: first the timeline's due entries; on a
    /// trap under `on_trap = "rollback"`, back to the previous version (recorded
    /// in the timeline) and the batch again.
    pub(super) fn udf_batch(
        &mut self,
        seq: u64,
        batch: &RecordBatch,
        fx: &mut Effects,
    ) -> Result<RecordBatch, VertexError> {
        self.catch_up()?;
        loop {
            let Operator::Udf(stage) = &mut self.operator else {
                return Ok(batch.clone());
            };
            let mut dead = Vec::new();
            match stage.process(batch, &mut dead) {
                Ok(out) => {
                    let module = stage.module().version.to_string();
                    let letters = dead_letters(seq, &module, dead);
                    self.emit_dead(fx, &letters);
                    return Ok(out);
                }
                Err(StageError::Trapped {
                    stage: name,
                    module,
                    position,
                    error,
                }) => {
                    let what =
                        format!("on the batch at input position {position} (input seq {seq})");
                    self.roll_back(&name, &module, &what, &error, fx)?;
                }
                Err(e) => return Err(VertexError::Stage(Box::new(e))),
            }
        }
    }

    /// Fires a timed UDF stage's timers as CTI `t` (input seq `seq`)
    /// passes: first the timeline's due entries; on a trap under
    /// `on_trap = "rollback"`, back to the previous version and the timers
    /// again. `None` for a stage without timers.
    pub(super) fn udf_cti(
        &mut self,
        seq: u64,
        t: i64,
        fx: &mut Effects,
    ) -> Result<Option<RecordBatch>, VertexError> {
        match &self.operator {
            Operator::Udf(stage) if stage.timed() => {}
            _ => return Ok(None),
        }
        self.catch_up()?;
        loop {
            let Operator::Udf(stage) = &mut self.operator else {
                return Ok(None);
            };
            let mut dead = Vec::new();
            match stage.on_cti(t, self.at.cti, &mut dead) {
                Ok(out) => {
                    let module = stage.module().version.to_string();
                    let letters = dead_letters(seq, &module, dead);
                    self.emit_dead(fx, &letters);
                    return Ok(Some(out));
                }
                Err(StageError::Trapped {
                    stage: name,
                    module,
                    error,
                    ..
                }) => {
                    let what = format!("firing timers as CTI {t} passed (input seq {seq})");
                    self.roll_back(&name, &module, &what, &error, fx)?;
                }
                Err(e) => return Err(VertexError::Stage(Box::new(e))),
            }
        }
    }

    /// After module `module` of stage `name` trapped (`what`, `error`)
    /// under `on_trap = "rollback"`: records the return to the version
    /// before it in the timeline, or fails when there is none.
    fn roll_back(
        &mut self,
        name: &str,
        module: &str,
        what: &str,
        error: &crate::udf::CallError,
        fx: &mut Effects,
    ) -> Result<(), VertexError> {
        let previous = self.patching.as_ref().and_then(|p| {
            (p.timeline.patches.len() as u64 == self.at.patches)
                .then(|| p.timeline.previous(p.timeline.patches.len()))
                .flatten()
                .map(str::to_string)
        });
        let Some(previous) = previous else {
            return Err(VertexError::Trapped {
                vertex: self.name.clone(),
                message: format!(
                    "stage `{name}` (module {module}) {error} {what}; on_trap = \"rollback\" but the stage has no earlier version to return to"
                ),
            });
        };
        tracing::warn!(vertex = %self.name, %module, "trapped {what} ({error}); rolling back to {previous}");
        self.record(
            previous,
            Change::Trap(format!("module {module} {error}")),
            fx,
        )
    }
}

/// A runtime filter of the timeline, compiled against the vertex's input.
pub(super) fn compile_filter(
    vertex: &str,
    text: &str,
    schema: &arrow_schema::Schema,
) -> Result<crate::filter::Filter, VertexError> {
    crate::filter::Filter::parse(text, schema).map_err(|e| VertexError::Input {
        vertex: vertex.to_string(),
        message: format!("the patch timeline's {e}"),
    })
}

pub(super) fn short_version(version: &str) -> &str {
    &version[..version.len().min(12)]
}
