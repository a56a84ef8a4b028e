//! The join's held events as keyed state: each held batch under its input
//! and id, a left batch's matched flags beside it.

use std::collections::BTreeMap;

use arrow_array::{Array, ArrayRef, RecordBatch};

use super::{Held, JoinError, JoinKind, Side, TemporalJoin, arrow_err, int_column};
use crate::entry::Entry;
use crate::udf::{KeyedState, StateChanges};

impl TemporalJoin {
    /// Held batches added and released since the last call, and changed
    /// matched flags, as keyed-state changes (key: input and batch id, with
    /// `m` after it for a left batch's flags; value: the batch, or the flags).
    pub fn take_delta(&mut self) -> StateChanges {
        let mut out: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut flagged = std::mem::take(&mut self.flagged);
        if std::mem::take(&mut self.cti_moved)
            && let Some(t) = self.cti
        {
            let (k, v) = super::super::cti_change(t);
            out.insert(k, v);
        }
        for (side, id) in std::mem::take(&mut self.added) {
            let Some((batch, _)) = self.sides[side].batches.get(&id) else {
                continue;
            };
            let entry = Entry::Batch {
                producer: String::new(),
                batch: batch.clone(),
            };
            names.clear();
            let bytes = entry
                .encode()
                .expect("a held batch encodes: it is a batch of a stream");
            names.insert(BATCH.to_string(), bytes);
            out.insert(held_key(side, id), Some(crate::udf::encode_entry(&names)));
            if side == 0 {
                flagged.push(id);
            }
        }
        flagged.sort_unstable();
        flagged.dedup();
        for id in flagged {
            let Some(flags) = self.sides[0].matched.get(&id) else {
                continue;
            };
            names.clear();
            names.insert(
                MATCHED.to_string(),
                flags.iter().map(|f| *f as u8).collect(),
            );
            out.insert(flags_key(id), Some(crate::udf::encode_entry(&names)));
        }
        // Released last: a batch added and released between two
        // checkpoints is deleted.
        for (side, id) in std::mem::take(&mut self.released) {
            out.insert(held_key(side, id), None);
            if side == 0 {
                out.insert(flags_key(id), None);
            }
        }
        out.into_iter().collect()
    }

    /// Takes back the state [`TemporalJoin::take_delta`] wrote (events the
    /// last CTI released are not held again).
    pub fn restore(&mut self, state: &KeyedState) -> Result<(), JoinError> {
        let cti = super::super::cti_of(state);
        self.cti = cti;
        self.cti_moved = false;
        self.sides = [Side::default(), Side::default()];
        self.added.clear();
        self.released.clear();
        self.flagged.clear();
        self.next_batch = 0;
        // A batch's key sorts just before its flags' key.
        for (key, names) in state {
            if key.as_slice() == super::super::CTI_KEY {
                continue;
            }
            let (Some(&side), Some(id)) = (key.first(), key.get(1..9)) else {
                return Err(JoinError::State(format!("a key of {} bytes", key.len())));
            };
            let side = usize::from(side).min(1);
            let id = u64::from_be_bytes(id.try_into().expect("8 bytes"));
            if let Some(flags) = names.get(MATCHED) {
                if let Some(kept) = self.sides[0].matched.get_mut(&id) {
                    for (k, f) in kept.iter_mut().zip(flags) {
                        *k = *f != 0;
                    }
                }
                continue;
            }
            let bytes = names
                .get(BATCH)
                .ok_or_else(|| JoinError::State("a held entry without its batch".into()))?;
            let Entry::Batch { batch, .. } = Entry::decode(bytes).map_err(JoinError::State)? else {
                return Err(JoinError::State("a held entry that is not a batch".into()));
            };
            self.next_batch = self.next_batch.max(id + 1);
            self.hold(side, id, batch, cti.unwrap_or(i64::MIN))?;
        }
        Ok(())
    }

    /// Holds the rows of restored batch `id` of input `side` that end after `cti`.
    fn hold(
        &mut self,
        side: usize,
        id: u64,
        batch: RecordBatch,
        cti: i64,
    ) -> Result<(), JoinError> {
        let starts = int_column(batch.column(0))?.clone();
        let ends = int_column(batch.column(1))?.clone();
        let key_cols: Vec<ArrayRef> = self.keys[side]
            .iter()
            .map(|&k| batch.column(k).clone())
            .collect();
        let rows = self
            .converter
            .convert_columns(&key_cols)
            .map_err(arrow_err)?;
        let mut held = 0;
        let s = &mut self.sides[side];
        for row in 0..batch.num_rows() {
            let (start, end) = (starts.value(row), ends.value(row));
            if end <= start || end <= cti {
                continue;
            }
            let h = Held {
                batch: id,
                row: row as u32,
                start,
                end,
            };
            if key_cols.iter().any(|c| c.is_null(row)) {
                if side == 0 && self.kind == JoinKind::Left {
                    s.unkeyed.push(h);
                    held += 1;
                }
                continue;
            }
            s.by_key
                .entry(rows.row(row).data().to_vec())
                .or_default()
                .push(h);
            held += 1;
        }
        if held > 0 {
            if side == 0 && self.kind == JoinKind::Left {
                s.matched.insert(id, vec![false; batch.num_rows()]);
            }
            s.batches.insert(id, (batch, held));
        }
        Ok(())
    }
}

/// The names a held batch's parts are kept under.
const BATCH: &str = "batch";
const MATCHED: &str = "matched";

fn held_key(side: usize, id: u64) -> Vec<u8> {
    let mut out = vec![side as u8];
    out.extend_from_slice(&id.to_be_bytes());
    out
}

fn flags_key(id: u64) -> Vec<u8> {
    let mut out = held_key(0, id);
    out.push(b'm');
    out
}
