//! A node's durable storage: one redb file holding every rStream's entries and
//! the node's metadata (catalog, snapshots, sink positions).
//!
//! Everything above this module goes through the [`Storage`] trait, so tests can
//! put a [`FaultyStorage`] in front of the real database and make it fail after
//! a given number of commits.
//!
//! Every value in the file carries a CRC-32 of its key and bytes, checked on
//! every read: damage inside the file is an error naming what was damaged,
//! never data served as good. redb checks its own layout with assertions; a
//! read that trips one is reported as damage too, without panic output.

mod file;
mod memory;

pub use file::RedbStorage;
pub use memory::{FaultyStorage, MemStorage};

use std::path::PathBuf;
use std::sync::Arc;

pub use crate::udf::StateChanges;

/// One change, applied atomically with the others of its commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Stores entry `seq` of `stream`.
    PutEntry {
        /// The stream's id.
        stream: u64,
        /// The entry's sequence number.
        seq: u64,
        /// The encoded entry (shared with the in-memory head of its stream).
        value: Arc<Vec<u8>>,
    },
    /// Deletes every entry of `stream` below `seq` (garbage collection).
    DeleteEntriesBelow {
        /// The stream's id.
        stream: u64,
        /// The first sequence number kept.
        seq: u64,
    },
    /// Sets a metadata key.
    PutMeta {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes a metadata key.
    DeleteMeta {
        /// The key.
        key: String,
    },
    /// Applies changes to one owner's keyed state (a checkpoint's delta).
    State {
        /// The owner (a vertex's snapshot key).
        owner: String,
        /// The changed keys.
        changes: StateChanges,
    },
    /// Removes all keyed state of an owner.
    ClearState {
        /// The owner.
        owner: String,
    },
}

/// Why storage failed. Each says what and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file is damaged; it was not modified.
    #[error(
        "the data file {path} is damaged ({detail}); Weir did not modify it. Restore it from a \
         backup, or move it aside to start this node empty"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        detail: String,
    },
    /// The disk is full.
    #[error("the disk holding {path} is full; nothing of the failed write was stored: {detail}")]
    Full {
        /// The database file.
        path: PathBuf,
        /// What the OS reported.
        detail: String,
    },
    /// A value in the file fails its checksum, or entries that must be
    /// there are missing: the file was damaged after it was written.
    #[error(
        "the data file {path} is damaged: {what}. Weir did not modify it; restore it from a \
         backup, or move it aside to start this node empty"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is damaged.
        what: Damage,
    },
    /// Another process has the database open.
    #[error("the data file {0} is in use by another process (is a node already running on it?)")]
    InUse(PathBuf),
    /// Any other failure.
    #[error("storage {path}: {detail}")]
    Other {
        /// The database file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// What a checksum or a missing entry showed to be damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// An entry of a stream.
    #[error("entry seq {seq} of stream #{stream} fails its checksum")]
    Entry {
        /// The stream's id.
        stream: u64,
        /// The entry's seq.
        seq: u64,
    },
    /// Entries of a stream that must be stored are not.
    #[error("stream #{stream} is missing entries from seq {from} (found {found})")]
    Missing {
        /// The stream's id.
        stream: u64,
        /// The first seq missing.
        from: u64,
        /// What was found instead: the next stored seq, or none.
        found: String,
    },
    /// A metadata value (catalog, snapshot, timeline, positions).
    #[error("metadata `{0}` fails its checksum")]
    Meta(String),
    /// A keyed-state value.
    #[error("the keyed state of `{owner}` (key {key}) fails its checksum")]
    State {
        /// The vertex owning it.
        owner: String,
        /// The key, in hex.
        key: String,
    },
    /// redb found its own structures inconsistent while reading.
    #[error("{0}")]
    Layout(String),
}

impl Damage {
    /// The same damage, naming stream `name` instead of its id.
    pub fn in_stream(&self, name: &str) -> String {
        match self {
            Damage::Entry { seq, .. } => {
                format!("entry seq {seq} of stream `{name}` fails its checksum")
            }
            Damage::Missing { from, found, .. } => {
                format!("stream `{name}` is missing entries from seq {from} (found {found})")
            }
            other => other.to_string(),
        }
    }
}

/// Durable key-value storage of a node.
pub trait Storage: Send + Sync + 'static {
    /// Applies `ops` atomically and durably: when this returns `Ok`, all of them
    /// survive a crash; when it returns `Err`, none of them were applied.
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError>;
    /// Entry `seq` of `stream`.
    fn entry(&self, stream: u64, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries of `stream` from `from` on, in order.
    fn entries(
        &self,
        stream: u64,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// The highest stored sequence number of `stream` plus one (0 when empty).
    fn next_seq(&self, stream: u64) -> Result<u64, StoreError>;
    /// A metadata value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every metadata entry whose key starts with `prefix`, in key order.
    fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Calls `f` with every keyed-state `(key, value)` of `owner`, in key order.
    fn scan_state(&self, owner: &str, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError>;
    /// The values of `keys` of `owner`'s keyed state (`None`: absent), read
    /// in one transaction.
    fn state_values(
        &self,
        owner: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Where the data is, for messages (the file's path).
    fn describe(&self) -> String;
    /// Whether writes would succeed again (after a failure such as a full
    /// disk): writes, syncs and removes a scratch file beside the data.
    fn probe(&self) -> Result<(), StoreError>;
}

/// Bytes a probe writes: room for the next group commits.
const PROBE_BYTES: usize = 4 << 20;

/// The key range of one owner's state: `[owner, owner + "\0")`, since no
/// string sorts between the two.
fn owner_range(owner: &str) -> (String, String) {
    (owner.to_string(), format!("{owner}\0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn put(stream: u64, seq: u64, v: &[u8]) -> Op {
        Op::PutEntry {
            stream,
            seq,
            value: Arc::new(v.to_vec()),
        }
    }

    #[test]
    fn entries_survive_reopen_and_gc_removes_below() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let s = RedbStorage::open(&path).unwrap();
            s.commit(&[put(1, 0, b"a"), put(1, 1, b"b"), put(2, 0, b"x")])
                .unwrap();
            s.commit(&[Op::PutMeta {
                key: "job/a".into(),
                value: b"1".to_vec(),
            }])
            .unwrap();
        }
        let s = RedbStorage::open(&path).unwrap();
        assert_eq!(s.next_seq(1).unwrap(), 2);
        assert_eq!(s.next_seq(3).unwrap(), 0);
        assert_eq!(s.entries(1, 0, 10).unwrap().len(), 2);
        assert_eq!(s.meta_prefix("job/").unwrap().len(), 1);
        s.commit(&[Op::DeleteEntriesBelow { stream: 1, seq: 1 }])
            .unwrap();
        assert_eq!(s.entries(1, 0, 10).unwrap(), vec![(1, b"b".to_vec())]);
        assert_eq!(s.entry(2, 0).unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let s = RedbStorage::open(&path).unwrap();
            s.commit(&[put(1, 0, &[7; 4096])]).unwrap();
        }
        let good = std::fs::read(&path).unwrap();
        // Truncated to a fraction of its size.
        std::fs::write(&path, &good[..good.len() / 3]).unwrap();
        let err = RedbStorage::open(&path).unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap().len(), good.len() / 3);
        // Garbage of the same size.
        std::fs::write(&path, vec![0x5a; good.len()]).unwrap();
        let err = RedbStorage::open(&path).unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
        // Empty.
        std::fs::write(&path, b"").unwrap();
        let err = RedbStorage::open(&path).unwrap_err();
        assert!(err.to_string().contains("the file is empty"), "{err}");
    }

    /// Flips one byte of every copy of `needle` in the file.
    fn flip(path: &Path, needle: &[u8]) {
        let mut bytes = std::fs::read(path).unwrap();
        let at: Vec<usize> = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i)
            .collect();
        assert!(!at.is_empty(), "the value is in the file");
        for i in at {
            bytes[i + needle.len() / 2] ^= 0x20;
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_damaged_value_is_an_error_naming_it_never_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let s = RedbStorage::open(&path).unwrap();
            s.commit(&[
                put(3, 7, b"entry-value-ENTRY"),
                Op::PutMeta {
                    key: "snap/j@1/v".into(),
                    value: b"meta-value-META".to_vec(),
                },
                Op::State {
                    owner: "snap/j@1/v".into(),
                    changes: vec![(b"k".to_vec(), Some(b"state-value-STATE".to_vec()))],
                },
            ])
            .unwrap();
        }
        flip(&path, b"entry-value-ENTRY");
        flip(&path, b"meta-value-META");
        flip(&path, b"state-value-STATE");
        let s = RedbStorage::open(&path).unwrap();
        let e = s.entry(3, 7).unwrap_err().to_string();
        assert!(
            e.contains("node.redb is damaged: entry seq 7 of stream #3 fails its checksum"),
            "{e}"
        );
        let e = s.entries(3, 0, 10).unwrap_err().to_string();
        assert!(e.contains("entry seq 7 of stream #3"), "{e}");
        let e = s.meta("snap/j@1/v").unwrap_err().to_string();
        assert!(
            e.contains("metadata `snap/j@1/v` fails its checksum"),
            "{e}"
        );
        assert!(s.meta_prefix("snap/").is_err());
        let e = s.scan_state("snap/j@1/v", &mut |_, _| {}).unwrap_err();
        assert!(
            e.to_string()
                .contains("keyed state of `snap/j@1/v` (key 6b) fails its checksum"),
            "{e}"
        );
    }

    fn state_of(s: &dyn Storage, owner: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        s.scan_state(owner, &mut |k, v| out.push((k.to_vec(), v.to_vec())))
            .unwrap();
        out
    }

    #[test]
    fn state_deltas_apply_per_owner_survive_reopen_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let change = |owner: &str, changes: &[(&[u8], Option<&[u8]>)]| Op::State {
            owner: owner.into(),
            changes: changes
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        };
        let ops = [
            // Owners that share a prefix must not see each other's keys.
            change("snap/j@1/a", &[(b"k1", Some(b"1")), (b"k2", Some(b"2"))]),
            change("snap/j@1/ab", &[(b"k1", Some(b"x"))]),
            change("snap/j@1/a/b", &[(b"", Some(b"empty key"))]),
            change("snap/j@1/a", &[(b"k2", None), (b"k3", Some(b"3"))]),
        ];
        let mem = MemStorage::default();
        mem.commit(&ops).unwrap();
        {
            let redb = RedbStorage::open(&path).unwrap();
            redb.commit(&ops).unwrap();
        }
        let redb = RedbStorage::open(&path).unwrap();
        for s in [&mem as &dyn Storage, &redb] {
            assert_eq!(
                state_of(s, "snap/j@1/a"),
                vec![
                    (b"k1".to_vec(), b"1".to_vec()),
                    (b"k3".to_vec(), b"3".to_vec())
                ]
            );
            assert_eq!(
                state_of(s, "snap/j@1/ab"),
                vec![(b"k1".to_vec(), b"x".to_vec())]
            );
            // Single keys read back as the scan does; deleted ones are absent.
            assert_eq!(
                s.state_values(
                    "snap/j@1/a",
                    &[b"k3".to_vec(), b"k2".to_vec(), b"k1".to_vec()]
                )
                .unwrap(),
                vec![Some(b"3".to_vec()), None, Some(b"1".to_vec())]
            );
            assert_eq!(
                s.state_values("snap/j@1/ab", &[b"k3".to_vec()]).unwrap(),
                vec![None]
            );
            s.commit(&[Op::ClearState {
                owner: "snap/j@1/a".into(),
            }])
            .unwrap();
            assert!(state_of(s, "snap/j@1/a").is_empty());
            assert_eq!(state_of(s, "snap/j@1/ab").len(), 1);
            assert_eq!(state_of(s, "snap/j@1/a/b").len(), 1);
        }
    }

    #[test]
    fn injected_failures_apply_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = FaultyStorage::new(RedbStorage::open(&dir.path().join("n.redb")).unwrap(), 1);
        s.commit(&[put(1, 0, b"a")]).unwrap();
        let err = s.commit(&[put(1, 1, b"b")]).unwrap_err();
        assert!(matches!(err, StoreError::Full { .. }));
        assert_eq!(s.next_seq(1).unwrap(), 1);
        assert_eq!(s.failures(), 1);
    }
}
