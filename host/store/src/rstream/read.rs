//! Reading an rStream: from memory at the head, from the store behind it,
//! with entries missing below the head reported as damage; and waiting for
//! entries to arrive.

use super::*;

impl Streams {
    /// Up to `limit` durable entries of `stream` from `from` on.
    pub fn read(
        &self,
        stream: u64,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StreamError> {
        self.read_upto(stream, from, limit, false)
    }

    /// Up to `limit` written entries of `stream` from `from` on, durable or
    /// not yet. Vertices read these: an entry lost in a crash is lost with
    /// every later write of the node (one ordered commit queue), including
    /// the snapshots of the vertices that read it, and replay rewrites it.
    pub fn read_written(
        &self,
        stream: u64,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StreamError> {
        self.read_upto(stream, from, limit, true)
    }

    fn read_upto(
        &self,
        stream: u64,
        from: u64,
        limit: usize,
        written: bool,
    ) -> Result<Vec<StoredEntry>, StreamError> {
        let (durable, in_memory, name) = {
            let state = self.lock();
            let head = state
                .heads
                .get(&stream)
                .ok_or_else(|| StreamError::Unknown(format!("#{stream}"), String::new()))?;
            if from < head.low {
                return Err(StreamError::Collected {
                    stream: head.name.clone(),
                    seq: from,
                    low: head.low,
                });
            }
            let upto = if written { head.next } else { head.durable };
            let end = upto.min(from.saturating_add(limit as u64));
            if from >= end {
                return Ok(Vec::new());
            }
            // The head (which holds every entry not yet durable): served from
            // memory when it holds the whole range, else the store's part.
            let entries: Vec<StoredEntry> = head
                .memory
                .range(from..end)
                .map(|(s, v)| (*s, v.clone()))
                .collect();
            let hit = entries.len() as u64 == end - from;
            (
                end.min(head.durable),
                hit.then_some(entries),
                head.name.clone(),
            )
        };
        if let Some(entries) = in_memory {
            return Ok(entries);
        }
        if from >= durable {
            return Ok(Vec::new());
        }
        let stored = self
            .inner
            .storage
            .entries(stream, from, (durable - from) as usize)
            .map_err(|e| in_stream(&name, e))?;
        // Every seq from the low-water mark to the durable end is stored:
        // one that is not was lost to damage (or collected meanwhile).
        let mut expected = from;
        let mut out = Vec::with_capacity(stored.len());
        for (seq, value) in stored.into_iter().filter(|(s, _)| *s < durable) {
            if seq != expected {
                break;
            }
            out.push((seq, Arc::new(value)));
            expected += 1;
        }
        if expected < durable {
            let low = self.positions(stream).map_or(0, |p| p.2);
            if from < low {
                return Err(StreamError::Collected {
                    stream: name,
                    seq: from,
                    low,
                });
            }
            let found = self
                .inner
                .storage
                .entries(stream, expected, 1)
                .map_err(|e| in_stream(&name, e))?
                .first()
                .map_or("no later entry".to_string(), |(s, _)| {
                    format!("seq {s} next")
                });
            return Err(StreamError::Damaged {
                path: self.inner.storage.describe(),
                what: crate::store::Damage::Missing {
                    stream,
                    from: expected,
                    found,
                }
                .in_stream(&name),
            });
        }
        Ok(out)
    }

    /// Waits until `stream` has a durable entry at `seq` or later, or `timeout`
    /// passes; returns whether it has.
    pub fn wait_for(&self, stream: u64, seq: u64, timeout: Duration) -> bool {
        self.wait_any(&[(stream, seq)], false, timeout)
    }

    /// Waits until one of `(stream, seq)` has an entry at `seq` or later
    /// (durable, or only `written`), or `timeout` passes; returns whether one has.
    pub fn wait_any(&self, wanted: &[(u64, u64)], written: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let arrived = wanted.iter().any(|(stream, seq)| {
                state.heads.get(stream).is_some_and(|h| {
                    let upto = if written { h.next } else { h.durable };
                    upto > *seq
                })
            });
            if arrived || state.failed.is_some() {
                return arrived;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
