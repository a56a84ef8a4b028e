//! CTI generation for sources: the policy applied event by event, late
//! events split off as dead letters.

use super::*;

/// CTI generation for a source, by policy. Sans-IO and snapshotted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CtiGen {
    /// The policy.
    pub policy: Option<CtiPolicy>,
    /// The highest event start seen.
    pub max_start: Option<i64>,
    /// The last CTI emitted.
    pub last: Option<i64>,
    /// Events since the last CTI (policy `Every`).
    pub count: u64,
}

impl CtiGen {
    /// A generator with `policy`.
    pub fn new(policy: CtiPolicy) -> CtiGen {
        CtiGen {
            policy: Some(policy),
            ..CtiGen::default()
        }
    }

    /// Splits `batch` (read by `source` at `input_seq`) into its on-time
    /// events and dead letters for the late ones, and returns the CTI to emit
    /// after it. The policy is applied event by event: an event is late when
    /// it starts before the CTI the events before it make (the last CTI
    /// emitted, or the highest start minus the lag, or the highest start at
    /// every N events), so which events are late does not depend on how the
    /// input was cut into batches, offline or on a node.
    pub fn on_batch(
        &mut self,
        batch: &RecordBatch,
        source: &str,
        input_seq: i64,
    ) -> (RecordBatch, Vec<DeadLetter>, Option<i64>) {
        let starts = batch.column(0).as_primitive::<Int64Type>();
        let before = self.last;
        let policy = self.policy.unwrap_or_default();
        let mut late: Vec<DeadLetter> = Vec::new();
        let mut keep: Option<Vec<bool>> = None;
        for (i, &start) in starts.values().iter().enumerate() {
            if let Some(cti) = self.last.filter(|c| start < *c) {
                keep.get_or_insert_with(|| vec![true; starts.len()])[i] = false;
                late.push(DeadLetter {
                    start,
                    input_seq,
                    module: "-".into(),
                    error: format!(
                        "late event: it starts before CTI {cti} of source `{source}` (already emitted, or made by the events before it)"
                    ),
                    row: crate::stage::row_json(&batch.slice(i, 1)),
                });
                continue;
            }
            let max = self.max_start.map_or(start, |m| m.max(start));
            self.max_start = Some(max);
            self.count += 1;
            let candidate = match policy {
                CtiPolicy::Lag(lag) => Some(max.saturating_sub(lag)),
                CtiPolicy::Every(n) if self.count >= n => {
                    self.count = 0;
                    Some(max)
                }
                CtiPolicy::Every(_) => None,
            };
            if let Some(c) = candidate.filter(|c| self.last.is_none_or(|l| *c > l)) {
                self.last = Some(c);
            }
        }
        let on_time = match keep {
            None => batch.clone(),
            Some(keep) => {
                arrow_select::filter::filter_record_batch(batch, &BooleanArray::from(keep))
                    .expect("filtering a batch by a mask of its own length")
            }
        };
        let cti = self.last.filter(|_| self.last != before);
        (on_time, late, cti)
    }

    /// A CTI arriving from upstream (the end marker, or punctuation ingested
    /// with the events): passes on if it advances.
    pub fn on_cti(&mut self, t: i64) -> Option<i64> {
        let advance = self.last.is_none_or(|l| t > l);
        if advance {
            self.last = Some(t);
        }
        advance.then_some(t)
    }
}
