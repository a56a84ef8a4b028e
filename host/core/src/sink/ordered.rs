//! A sink's canonical order: output that does not depend on parallelism,
//! batch sizes or threads.
//!
//! A sink holds the lines of its input's rows and, at each CTI `t`, writes
//! those of rows that start before `t`, ordered by start, then end, then
//! the line's bytes; rows that start at or after `t` wait for a later CTI
//! (the end marker writes all). Rows before a CTI may come in any order
//! and interleaving, from any number of partitions: the lines written are
//! the same. Together the releases are the whole output sorted by (start,
//! end, line), wherever the CTIs fall.
//!
//! Restarting: a sink that recorded [`Ordered::resume`] re-reads its input
//! from [`Ordered::resume_seq`]; rows of entries before the last release
//! that started before its CTI were written already and are skipped.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use serde::{Deserialize, Serialize};

/// One held row: its interval, where its line is, and the entry it came in.
#[derive(Debug, Clone, Copy)]
struct Held {
    start: i64,
    end: i64,
    at: usize,
    len: usize,
    seq: u64,
}

/// Where an ordered sink stands: the last release, to restart after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Seq of the CTI entry of the last release.
    pub seq: u64,
    /// That CTI: rows before it (in earlier entries) were written.
    pub cti: i64,
}

/// The rows a sink holds until a CTI makes their order final.
#[derive(Debug, Default)]
pub struct Ordered {
    lines: Vec<u8>,
    held: Vec<Held>,
    scratch: Vec<u8>,
    released: Option<Released>,
}

impl Ordered {
    /// An empty sink that has released nothing.
    pub fn new() -> Ordered {
        Ordered::default()
    }

    /// A sink restarting after `released` (`None`: from the start); feed
    /// it its input again from the seq the restart recorded.
    pub fn resume(released: Option<Released>) -> Ordered {
        Ordered {
            released,
            ..Ordered::default()
        }
    }

    /// The last release.
    pub fn released(&self) -> Option<Released> {
        self.released
    }

    /// Where to re-read the input from after a restart: the first entry
    /// with a row still held, else `next` (the seq after the last read).
    pub fn resume_seq(&self, next: u64) -> u64 {
        self.held
            .iter()
            .map(|h| h.seq)
            .min()
            .unwrap_or(next)
            .min(next)
    }

    /// Rows held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Holds the rows of `batch` (entry `seq`; interval columns first) as
    /// lines of the columns `projection` (all when `None`), with `_start`
    /// and `_end` when `interval`.
    pub fn push(
        &mut self,
        seq: u64,
        batch: &RecordBatch,
        projection: Option<&[usize]>,
        interval: bool,
    ) -> std::io::Result<()> {
        self.scratch.clear();
        super::write_projected(&mut self.scratch, batch, projection, interval)?;
        let starts = batch.column(0).as_primitive::<Int64Type>();
        let ends = batch.column(1).as_primitive::<Int64Type>();
        let skip_before = self
            .released
            .filter(|r| seq < r.seq)
            .map(|r| r.cti)
            .unwrap_or(i64::MIN);
        // JSON escapes newlines in strings: every `\n` ends a row's line.
        let mut from = 0;
        for (row, end_at) in self
            .scratch
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .enumerate()
        {
            let start = starts.value(row);
            if start >= skip_before {
                self.held.push(Held {
                    start,
                    end: ends.value(row),
                    at: self.lines.len(),
                    len: end_at - from,
                    seq,
                });
                self.lines.extend_from_slice(&self.scratch[from..end_at]);
            }
            from = end_at;
        }
        Ok(())
    }

    /// CTI `t` at entry `seq`: writes the held rows that start before `t`
    /// in canonical order, and returns how many.
    pub fn release(&mut self, seq: u64, t: i64, out: &mut impl Write) -> std::io::Result<u64> {
        let lines = &self.lines;
        let line = |h: &Held| &lines[h.at..h.at + h.len];
        let (mut ready, waiting): (Vec<Held>, Vec<Held>) =
            self.held.iter().partition(|h| h.start < t);
        ready.sort_unstable_by(|a, b| {
            (a.start, a.end)
                .cmp(&(b.start, b.end))
                .then_with(|| line(a).cmp(line(b)))
        });
        for h in &ready {
            out.write_all(line(h))?;
        }
        let mut kept = Vec::with_capacity(waiting.iter().map(|h| h.len).sum());
        self.held = waiting
            .into_iter()
            .map(|h| {
                let at = kept.len();
                kept.extend_from_slice(line(&h));
                Held { at, ..h }
            })
            .collect();
        self.lines = kept;
        // A restart's second look at a CTI before its last release writes
        // nothing (what it held starts after that release's CTI) and
        // moves nothing back.
        self.released = Some(match self.released {
            Some(r) => Released {
                seq: r.seq.max(seq),
                cti: r.cti.max(t),
            },
            None => Released { seq, cti: t },
        });
        Ok(ready.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: &[(i64, &str)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_start", DataType::Int64, false),
            Field::new("_end", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0 + 1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn text(out: &[u8]) -> Vec<String> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rows_come_out_sorted_and_only_once_a_cti_passes_their_start() {
        let mut sink = Ordered::new();
        let mut out = Vec::new();
        sink.push(
            0,
            &batch(&[(5, "b"), (1, "z"), (5, "a"), (9, "q")]),
            None,
            false,
        )
        .unwrap();
        assert_eq!(sink.release(1, 6, &mut out).unwrap(), 3);
        assert_eq!(text(&out), [r#"{"v":"z"}"#, r#"{"v":"a"}"#, r#"{"v":"b"}"#]);
        assert_eq!(sink.held(), 1);
        assert_eq!(sink.resume_seq(2), 0);
        sink.push(2, &batch(&[(7, "c")]), None, false).unwrap();
        sink.release(3, i64::MAX, &mut out).unwrap();
        assert_eq!(text(&out)[3..], [r#"{"v":"c"}"#, r#"{"v":"q"}"#]);
        assert_eq!(sink.resume_seq(4), 4);
    }

    #[test]
    fn interleaving_and_batching_do_not_change_the_output() {
        let rows = [(3, "x"), (1, "b"), (1, "a"), (2, "k"), (8, "m"), (3, "c")];
        let mut one = Ordered::new();
        let mut a = Vec::new();
        one.push(0, &batch(&rows), None, false).unwrap();
        one.release(1, 4, &mut a).unwrap();
        one.release(2, i64::MAX, &mut a).unwrap();
        let mut two = Ordered::new();
        let mut b = Vec::new();
        let (odd, even): (Vec<_>, Vec<_>) = rows.iter().enumerate().partition(|(i, _)| i % 2 == 1);
        let odd: Vec<_> = odd.into_iter().map(|(_, r)| *r).collect();
        let even: Vec<_> = even.into_iter().map(|(_, r)| *r).collect();
        two.push(0, &batch(&even), None, false).unwrap();
        two.push(1, &batch(&odd), None, false).unwrap();
        two.release(2, 2, &mut b).unwrap();
        two.release(3, 3, &mut b).unwrap();
        two.release(4, i64::MAX, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_restart_skips_what_was_written_and_writes_what_was_held() {
        let mut sink = Ordered::new();
        let mut out = Vec::new();
        let first = batch(&[(1, "a"), (7, "late")]);
        sink.push(0, &first, None, false).unwrap();
        sink.release(1, 5, &mut out).unwrap();
        let (released, from) = (sink.released(), sink.resume_seq(2));
        // Crash; the restart re-reads from `from`.
        let mut again = Ordered::resume(released);
        again.push(from, &first, None, false).unwrap();
        again.release(3, i64::MAX, &mut out).unwrap();
        assert_eq!(text(&out), [r#"{"v":"a"}"#, r#"{"v":"late"}"#]);
    }
}
