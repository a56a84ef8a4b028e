//! What a vertex here changed of its keyed state since the snapshot its
//! backup stored last, so that each backup round carries the keys that
//! changed, not the whole state. A log is kept per vertex that has a
//! backup, in memory: a restart, a gap in its snapshots or a log grown too
//! large sends the whole state once, and the log starts again there.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// Keys logged for one vertex before its log is dropped: its backup is
/// sent the whole state once, as cheaply as that many keys.
const MAX_KEYS: usize = 1 << 20;

/// Benchmark hook: when set, every backup round sends the whole keyed
/// state, for comparing the traffic of the two.
pub const WHOLE_BACKUPS_ENV: &str = "WEIR_BENCH_WHOLE_BACKUPS";

/// The keys each snapshot of one vertex changed, since a snapshot its
/// backup may hold.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Changed {
    /// The id of the snapshot the log starts after.
    from: u64,
    /// The id of the latest snapshot logged.
    last: u64,
    /// Per snapshot id after `from`: the keys it changed.
    log: BTreeMap<u64, Vec<Vec<u8>>>,
    /// How many keys the log holds.
    keys: usize,
}

impl Changed {
    /// Snapshot `id` changes `keys`. Logged before it is committed, so the
    /// log never lacks a committed snapshot's keys. A snapshot that does
    /// not follow the one logged last (a restart from an earlier one)
    /// starts the log again after the one it follows.
    pub(super) fn note(&mut self, id: u64, keys: Vec<Vec<u8>>) {
        if self.last + 1 != id {
            *self = Changed {
                from: id.saturating_sub(1),
                last: id.saturating_sub(1),
                ..Changed::default()
            };
        }
        self.keys += keys.len();
        self.log.insert(id, keys);
        self.last = id;
        if self.keys > MAX_KEYS {
            self.log.clear();
            self.keys = 0;
            self.from = id;
        }
    }

    /// The keys changed after snapshot `since`, which the backup holds:
    /// the log forgets what came before it. `None` when the log does not
    /// reach back to it.
    pub(super) fn since(&mut self, since: u64) -> Option<BTreeSet<Vec<u8>>> {
        if since < self.from || since > self.last {
            return None;
        }
        while let Some(entry) = self.log.first_entry() {
            if *entry.key() > since {
                break;
            }
            self.keys -= entry.get().len();
            entry.remove();
        }
        self.from = since;
        Some(self.log.values().flatten().cloned().collect())
    }
}

impl Jobs {
    /// Snapshot `id` of the vertex with snapshot key `key` changes the
    /// keys of `changes` (called before it is committed).
    pub(super) fn note_changed(&self, key: &str, id: u64, changes: &StateChanges) {
        let keys = changes.iter().map(|(k, _)| k.clone()).collect();
        lock(&self.inner.changed)
            .entry(key.to_string())
            .or_default()
            .note(id, keys);
    }

    /// The keyed state of the vertex with snapshot key `key` for a backup
    /// that holds snapshot `since`: the keys changed after it with their
    /// values (`None`: deleted), and `since`; or, when that is not known,
    /// the whole state and `None`.
    pub(super) fn state_for_backup(
        &self,
        key: &str,
        since: Option<u64>,
    ) -> Result<(StateChanges, Option<u64>)> {
        static WHOLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let whole = *WHOLE.get_or_init(|| std::env::var_os(WHOLE_BACKUPS_ENV).is_some());
        let streams = &self.inner.streams;
        let changed = since.filter(|_| !whole).and_then(|s| {
            let keys = lock(&self.inner.changed).get_mut(key)?.since(s)?;
            Some((s, keys))
        });
        if let Some((since, keys)) = changed {
            let keys: Vec<Vec<u8>> = keys.into_iter().collect();
            let values = streams.state_values(key, &keys)?;
            return Ok((keys.into_iter().zip(values).collect(), Some(since)));
        }
        let mut entries = Vec::new();
        streams.scan_state(key, &mut |k, v| {
            entries.push((k.to_vec(), Some(v.to_vec())))
        })?;
        Ok((entries, None))
    }

    /// Forgets the logs of the vertices whose snapshot keys `drop` picks.
    pub(super) fn forget_changed(&self, drop: impl Fn(&str) -> bool) {
        lock(&self.inner.changed).retain(|key, _| !drop(key));
    }

    /// Records what this member sent the backup of vertex `key`
    /// (`PREFIX/VERTEX`), for its status.
    pub(super) fn sent_backup(&self, key: &str, sent: BackupSent) {
        lock(&self.inner.sent).insert(key.to_string(), sent);
    }

    /// What this member last sent the backup of vertex `key`
    /// (`PREFIX/VERTEX`).
    pub(super) fn backup_sent(&self, key: &str) -> Option<BackupSent> {
        lock(&self.inner.sent).get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    fn set(names: &[&str]) -> Option<BTreeSet<Vec<u8>>> {
        Some(keys(names).into_iter().collect())
    }

    #[test]
    fn the_keys_changed_since_a_snapshot_the_backup_holds() {
        let mut c = Changed::default();
        c.note(1, keys(&["a", "b"]));
        c.note(2, keys(&["b", "c"]));
        c.note(3, keys(&["d"]));
        assert_eq!(c.since(0), set(&["a", "b", "c", "d"]));
        assert_eq!(c.since(2), set(&["d"]));
        assert_eq!(c.since(3), set(&[]));
        // What came before the snapshot the backup holds is forgotten.
        assert_eq!(c.since(1), None);
        assert_eq!(c.keys, 0);
        // Snapshots ahead of the log are not known either.
        assert_eq!(c.since(4), None);
    }

    #[test]
    fn a_gap_in_the_snapshots_starts_the_log_again() {
        let mut c = Changed::default();
        c.note(1, keys(&["a"]));
        c.note(2, keys(&["b"]));
        // Restarted from snapshot 6 (state written elsewhere): 7 follows it.
        c.note(7, keys(&["c"]));
        assert_eq!(c.since(2), None);
        assert_eq!(c.since(6), set(&["c"]));
        // Restarted from an earlier snapshot than the one logged last.
        c.note(5, keys(&["e"]));
        assert_eq!(c.since(6), None);
        assert_eq!(c.since(4), set(&["e"]));
    }

    #[test]
    fn a_log_grown_too_large_is_dropped_until_the_next_snapshot() {
        let mut c = Changed::default();
        c.note(1, keys(&["a"]));
        let many: Vec<Vec<u8>> = (0..=MAX_KEYS as u32)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        c.note(2, many);
        assert_eq!(c.keys, 0);
        assert_eq!(c.since(0), None);
        assert_eq!(c.since(1), None);
        c.note(3, keys(&["z"]));
        assert_eq!(c.since(2), set(&["z"]));
    }
}
