//! Where a vertex stands for recovery: the CTI boundaries where it takes
//! snapshots (or, offline, drops its state changes), the snapshot itself,
//! and which inputs are worth reading while a merge waits.

use super::*;

impl Vertex {
    /// Whether input `i` is worth reading now: not when its rows wait in
    /// the merge, beyond a batch or so, for another input that is behind.
    /// What waits is in every snapshot, and a snapshot is taken at every
    /// CTI boundary: a union whose other inputs finished while one lags
    /// copies what they left waiting at each CTI of the one that lags.
    pub fn reads(&self, i: usize) -> bool {
        /// Rows of one input a merge holds before it stops reading it.
        const AHEAD: usize = 1024;
        self.merge.as_ref().is_none_or(|m| !m.ahead(i, AHEAD))
    }

    /// The vertex of a run that never restores (offline): it takes no
    /// snapshots, and drops its state changes at each checkpoint.
    pub fn without_snapshots(mut self) -> Self {
        self.snapshots = false;
        self
    }

    /// After an input entry that made the vertex write CTIs: a CTI boundary,
    /// where the vertex holds no event older than its last CTI, so this is
    /// where snapshots are taken (never between two CTIs of one entry, whose
    /// merge state has already moved past both).
    pub(super) fn boundary(&mut self, ctis_before: u64, fx: &mut Effects) {
        if self.at.ctis == ctis_before {
            return;
        }
        if !self.snapshots {
            // What a checkpoint would persist is dropped, so the changes
            // operators track since the last one stay bounded.
            if self.at.finished || self.at.ctis / 64 > ctis_before / 64 {
                match &mut self.operator {
                    Operator::Udf(stage) => stage.forget_delta(),
                    Operator::Temporal(op) => drop(op.take_delta()),
                    _ => {}
                }
            }
            return;
        }
        let due = match self.recovery {
            Recovery::Checkpoint { every } => {
                self.at.finished || self.at.ctis / every > ctis_before / every
            }
            Recovery::Replay { window } => {
                // Replay rebuilds state from the input window; none is persisted.
                match &mut self.operator {
                    Operator::Udf(stage) => stage.forget_delta(),
                    Operator::Temporal(op) => drop(op.take_delta()),
                    _ => {}
                }
                self.markers.push_back(self.snapshot());
                while self.markers.len() as u64 > window + 1 {
                    self.markers.pop_front();
                }
                true
            }
        };
        if due {
            self.at.id += 1;
            fx.snapshot = Some(match self.recovery {
                Recovery::Checkpoint { .. } => {
                    let mut s = self.snapshot();
                    match &mut self.operator {
                        Operator::Udf(stage) => s.state = stage.take_delta(),
                        Operator::Temporal(op) => s.state = op.take_delta(),
                        _ => {}
                    }
                    s
                }
                // A finished vertex never replays; it only needs to know it finished.
                Recovery::Replay { .. } if self.at.finished => self.snapshot(),
                Recovery::Replay { .. } => {
                    let mut oldest = self.markers.front().cloned().unwrap_or_default();
                    oldest.id = self.at.id;
                    oldest
                }
            });
        }
    }

    /// The vertex's snapshot now, without keyed-state changes.
    pub fn snapshot(&self) -> VertexSnapshot {
        let mut s = self.at.clone();
        match &self.operator {
            Operator::Udf(stage) => s.stage = Some(stage.checkpoint()),
            Operator::Source(generator) => s.source = Some(generator.clone()),
            Operator::Union | Operator::Temporal(_) => {}
        }
        if let Some(merge) = &self.merge {
            let (ctis, points, emitted) = merge.ctis();
            s.merge = Some(MergeState {
                pending: merge.pending().into_iter().map(coalesced).collect(),
                ctis,
                points,
                emitted,
            });
        }
        s
    }
}

/// One input's rows waiting in a merge, as a snapshot holds them: one
/// batch at the first one's seq, not one per entry read (a merge that waits
/// on a slow input holds thousands of them, and a snapshot is taken at
/// every CTI boundary). The merge releases an input's rows by (seq, row),
/// an order the concatenation keeps, so a merge restored from it releases
/// the same rows in the same order as the one it was taken from.
fn coalesced(list: Vec<(u64, RecordBatch)>) -> Vec<(u64, serde_bytes::ByteBuf)> {
    let encode = |batch: RecordBatch| {
        let bytes = Entry::Batch {
            producer: String::new(),
            batch,
        }
        .encode()
        .unwrap_or_default();
        serde_bytes::ByteBuf::from(bytes)
    };
    let Some((first, schema)) = list.first().map(|(seq, b)| (*seq, b.schema())) else {
        return Vec::new();
    };
    if list.len() == 1 {
        return list.into_iter().map(|(seq, b)| (seq, encode(b))).collect();
    }
    match arrow_select::concat::concat_batches(&schema, list.iter().map(|(_, b)| b)) {
        Ok(one) => vec![(first, encode(one))],
        Err(_) => list.into_iter().map(|(seq, b)| (seq, encode(b))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::tests::{feed, vertex};
    use super::*;

    /// A union whose other input finished while one lags stops reading it
    /// once about a thousand of its rows wait: each snapshot, taken at every
    /// CTI of the one that lags, holds what waits. The lagging input is
    /// always read.
    #[test]
    fn a_union_stops_reading_an_input_whose_rows_wait_for_a_lagging_one() {
        // Input 0: entries of 64 events, each followed by a CTI; input 1
        // has said nothing yet.
        let fast: Vec<Result<Vec<i64>, i64>> = (0..100)
            .flat_map(|k| [Ok(vec![100 * k; 64]), Err(100 * k + 50)])
            .collect();
        let inputs = vec![fast, Vec::new()];
        let mut union = vertex(2, Recovery::Checkpoint { every: 1 }, None);
        let mut out = BTreeMap::new();
        let mut read = 0;
        while union.reads(0) && read < inputs[0].len() {
            feed(&mut union, &inputs, &mut std::iter::repeat(0), 1, &mut out).expect("fed");
            read += 1;
        }
        assert!(read < inputs[0].len(), "input 0 was read to its end");
        assert!(union.reads(1), "the lagging input is read");
        let waiting: usize = union.snapshot().merge.expect("a merge").pending[0]
            .iter()
            .map(|(_, b)| match Entry::decode(b).expect("an entry") {
                Entry::Batch { batch, .. } => batch.num_rows(),
                Entry::Cti(_) => 0,
            })
            .sum();
        assert!((1024..1024 + 64).contains(&waiting), "{waiting} rows wait");
    }

    /// A union waiting on a slow input holds the other's rows: its
    /// snapshot holds them as one batch, in the order they were read, and a
    /// union loaded from it writes what the one it was taken from writes.
    #[test]
    fn a_waiting_unions_snapshot_holds_one_batch_per_input() {
        // Input 0 reads 50 entries of events (a CTI each) while input 1,
        // slow, has said nothing yet; then input 1 catches up.
        let mut fast: Vec<Result<Vec<i64>, i64>> = Vec::new();
        for k in 0..50 {
            fast.push(Ok(vec![10 * k, 10 * k + 3]));
            fast.push(Err(10 * k + 5));
        }
        let slow: Vec<Result<Vec<i64>, i64>> = (0..10)
            .flat_map(|k| [Ok(vec![50 * k + 1]), Err(50 * k + 60)])
            .collect();
        let inputs = vec![fast, slow];
        let every = Recovery::Checkpoint { every: 1 };
        let mut whole = vertex(2, every, None);
        let mut expected = BTreeMap::new();
        feed(
            &mut whole,
            &inputs,
            &mut std::iter::repeat(0),
            usize::MAX,
            &mut expected,
        )
        .expect("fed");
        let mut first = vertex(2, every, None);
        let mut got = BTreeMap::new();
        // All of input 0, then input 1's first CTI: a snapshot.
        let mut order = std::iter::repeat_n(0, 100).chain(std::iter::repeat(1));
        let snapshot = feed(&mut first, &inputs, &mut order, 102, &mut got)
            .expect("fed")
            .expect("a snapshot at input 1's first CTI");
        let pending = &snapshot.merge.as_ref().expect("a union's merge").pending;
        assert_eq!(pending[0].len(), 1, "input 0's waiting rows, as one batch");
        let bytes = postcard::to_allocvec(&snapshot).expect("encodes");
        let loaded = postcard::from_bytes(&bytes).expect("decodes");
        let mut second = vertex(2, every, Some(loaded));
        feed(
            &mut second,
            &inputs,
            &mut std::iter::repeat(1),
            usize::MAX,
            &mut got,
        )
        .expect("fed");
        assert_eq!(expected, got);
    }
}
