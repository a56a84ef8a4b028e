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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Entries of every rStream: `(stream id, seq)` → encoded entry.
const ENTRIES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("entries");
/// Node metadata: key → value.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Host-owned keyed state: (owner, key) → value. An owner is one vertex.
const STATE: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("state");
/// The metadata key counting commits (8 bytes, little-endian).
const COMMITS_KEY: &str = "weir/commits";
/// The metadata key naming the layout of the file's values.
const FORMAT_KEY: &str = "weir/format";
/// Values are `crc32(key, value)` (4 bytes, little-endian) then the value.
const FORMAT: &[u8] = b"2: crc32 per value";

/// Changes to one owner's keyed state: `(key, Some(value))` sets a key,
/// `(key, None)` removes it.
pub type StateChanges = Vec<(Vec<u8>, Option<Vec<u8>>)>;

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

/// The checksum of a value under its key: damage to either shows.
fn checksum(key: &[&[u8]], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for part in key {
        h.update(&(part.len() as u32).to_le_bytes());
        h.update(part);
    }
    h.update(value);
    h.finalize()
}

/// `value` as stored: its checksum first.
fn seal(key: &[&[u8]], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + value.len());
    out.extend_from_slice(&checksum(key, value).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The value of a stored `sealed` one, if its checksum holds.
fn unseal<'a>(key: &[&[u8]], sealed: &'a [u8]) -> Option<&'a [u8]> {
    let (sum, value) = sealed.split_first_chunk::<4>()?;
    (u32::from_le_bytes(*sum) == checksum(key, value)).then_some(value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

thread_local! {
    /// Set while this thread is inside redb: a panic there is damage, said
    /// as an error, so the panic hook stays quiet.
    static IN_REDB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a call into redb), turning a panic of redb's layout assertions
/// into [`StoreError::Damaged`] without printing it.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_REDB.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = IN_REDB.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_REDB.with(|c| c.set(was));
    result.unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "its layout is inconsistent".into());
        Err(StoreError::Damaged {
            path: path.to_path_buf(),
            what: Damage::Layout(format!("its layout is inconsistent ({detail})")),
        })
    })
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
    /// Where the data is, for messages (the file's path).
    fn describe(&self) -> String;
    /// Whether writes would succeed again (after a failure such as a full
    /// disk): writes, syncs and removes a scratch file beside the data.
    fn probe(&self) -> Result<(), StoreError>;
}

/// Bytes a probe writes: room for the next group commits.
const PROBE_BYTES: usize = 4 << 20;

/// The redb database of a node.
pub struct RedbStorage {
    db: Database,
    path: PathBuf,
    /// Commits made, and the file beside the database recording them.
    commits: Mutex<Commits>,
}

/// The count of commits, kept in the database and, after each commit, in a
/// small file beside it (`node.redb.commits`, written but not synced). After
/// a crash of the process the file is never ahead of the database, since it
/// is written after each commit is durable; after a power loss it may lag.
/// Ahead means the database lost transactions it had acknowledged: redb, when
/// its newest transaction fails its checksums, falls back to the one before.
#[derive(Debug)]
struct Commits {
    count: u64,
    file: Option<std::fs::File>,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStorage {
    /// Opens the database at `path`, creating it if it does not exist. A file
    /// that exists but is not a sound redb database is an error, never a reset.
    pub fn open(path: &Path) -> Result<RedbStorage, StoreError> {
        let existed = path.exists();
        if existed {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "the file is empty".into(),
                });
            }
        }
        // redb checks a damaged file's layout with assertions in places, so a
        // panic while opening is reported as damage too.
        let db = guarded(path, || {
            if existed {
                Database::open(path)
            } else {
                Database::create(path)
            }
            .map_err(|e| open_error(path, e))
        })
        .map_err(|e| match e {
            StoreError::Damaged { path, what } => StoreError::Corrupt {
                path,
                detail: what.to_string(),
            },
            e => e,
        })?;
        let storage = RedbStorage {
            db,
            path: path.to_path_buf(),
            commits: Mutex::new(Commits {
                count: 0,
                file: None,
            }),
        };
        guarded(path, || storage.prepare(existed))?;
        storage.check_commits()?;
        Ok(storage)
    }

    /// The file recording the commit count.
    fn commits_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_os_string();
        name.push(".commits");
        PathBuf::from(name)
    }

    /// Compares the database's commit count with the one recorded beside it.
    fn check_commits(&self) -> Result<(), StoreError> {
        let count = guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(META).map_err(|e| self.error(e))?;
            let value = table.get(COMMITS_KEY).map_err(|e| self.error(e))?;
            Ok(value
                .and_then(|v| v.value().try_into().ok())
                .map_or(0, u64::from_le_bytes))
        })?;
        let side = self.commits_path();
        let recorded = std::fs::read(&side)
            .ok()
            .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
            .map_or(0, u64::from_le_bytes);
        if recorded > count {
            return Err(self.damaged(Damage::Layout(format!(
                "it holds {count} commits but {recorded} were acknowledged ({} says so): its \
                 newest transactions failed redb's checksums and were dropped",
                side.display()
            ))));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&side)
            .map_err(|e| StoreError::Other {
                path: side.clone(),
                detail: e.to_string(),
            })?;
        let mut commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        commits.count = count;
        commits.file = Some(file);
        record_commits(&mut commits);
        Ok(())
    }

    /// Makes sure every table exists (so readers never see "no such table")
    /// and that the file's values carry checksums.
    fn prepare(&self, existed: bool) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        tx.open_table(ENTRIES).map_err(|e| self.error(e))?;
        let mut meta = tx.open_table(META).map_err(|e| self.error(e))?;
        tx.open_table(STATE).map_err(|e| self.error(e))?;
        let format = meta
            .get(FORMAT_KEY)
            .map_err(|e| self.error(e))?
            .map(|v| v.value().to_vec());
        match format {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(StoreError::Other {
                    path: self.path.clone(),
                    detail: format!(
                        "the file's layout is `{}`, which this version of Weir does not read",
                        String::from_utf8_lossy(&f)
                    ),
                });
            }
            None if existed && meta.first().map_err(|e| self.error(e))?.is_some() => {
                return Err(StoreError::Other {
                    path: self.path.clone(),
                    detail: "the file was written by a version of Weir without checksums; \
                             export its streams with that version"
                        .into(),
                });
            }
            None => {
                meta.insert(FORMAT_KEY, FORMAT).map_err(|e| self.error(e))?;
            }
        }
        drop(meta);
        tx.commit().map_err(|e| self.error(e))
    }

    fn damaged(&self, what: Damage) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            what,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: impl Into<redb::Error>) -> StoreError {
        classify(&self.path, e.into())
    }
}

fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.to_path_buf()),
        other => match classify(path, other.into()) {
            StoreError::Other { path, detail } => StoreError::Corrupt { path, detail },
            e => e,
        },
    }
}

fn classify(path: &Path, e: redb::Error) -> StoreError {
    let path = path.to_path_buf();
    match e {
        redb::Error::Corrupted(detail) => StoreError::Corrupt { path, detail },
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => StoreError::Full {
            path,
            detail: io.to_string(),
        },
        other => StoreError::Other {
            path,
            detail: other.to_string(),
        },
    }
}

impl Storage for RedbStorage {
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        guarded(&self.path, || self.commit_ops(ops))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn probe(&self) -> Result<(), StoreError> {
        use std::io::Write;
        let mut name = self.path.as_os_str().to_os_string();
        name.push(".probe");
        let probe = PathBuf::from(name);
        let written = std::fs::File::create(&probe).and_then(|mut f| {
            f.write_all(&vec![0; PROBE_BYTES])?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        written.map_err(|e| classify(&self.path, redb::Error::Io(e)))
    }

    fn entry(&self, stream: u64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(ENTRIES).map_err(|e| self.error(e))?;
            let value = table.get((stream, seq)).map_err(|e| self.error(e))?;
            value
                .map(|v| self.entry_value(stream, seq, v.value()))
                .transpose()
        })
    }

    fn entries(
        &self,
        stream: u64,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(ENTRIES).map_err(|e| self.error(e))?;
            let mut out = Vec::new();
            for item in table
                .range((stream, from)..=(stream, u64::MAX))
                .map_err(|e| self.error(e))?
            {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(|e| self.error(e))?;
                let (s, seq) = k.value();
                if s != stream {
                    break;
                }
                out.push((seq, self.entry_value(stream, seq, v.value())?));
            }
            Ok(out)
        })
    }

    fn next_seq(&self, stream: u64) -> Result<u64, StoreError> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(ENTRIES).map_err(|e| self.error(e))?;
            let last = table
                .range((stream, 0)..=(stream, u64::MAX))
                .map_err(|e| self.error(e))?
                .next_back();
            match last {
                Some(item) => {
                    let (k, _) = item.map_err(|e| self.error(e))?;
                    Ok(k.value().1 + 1)
                }
                None => Ok(0),
            }
        })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(META).map_err(|e| self.error(e))?;
            let value = table.get(key).map_err(|e| self.error(e))?;
            value.map(|v| self.meta_value(key, v.value())).transpose()
        })
    }

    fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(META).map_err(|e| self.error(e))?;
            let mut out = Vec::new();
            for item in table.range(prefix..).map_err(|e| self.error(e))? {
                let (k, v) = item.map_err(|e| self.error(e))?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if key == FORMAT_KEY || key == COMMITS_KEY {
                    continue;
                }
                out.push((key.to_string(), self.meta_value(key, v.value())?));
            }
            Ok(out)
        })
    }

    fn scan_state(&self, owner: &str, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(STATE).map_err(|e| self.error(e))?;
            let (from, to) = owner_range(owner);
            for item in table
                .range((from.as_str(), &[][..])..(to.as_str(), &[][..]))
                .map_err(|e| self.error(e))?
            {
                let (k, v) = item.map_err(|e| self.error(e))?;
                let (o, key) = k.value();
                let value = unseal(&[o.as_bytes(), key], v.value()).ok_or_else(|| {
                    self.damaged(Damage::State {
                        owner: o.to_string(),
                        key: hex(key),
                    })
                })?;
                f(key, value);
            }
            Ok(())
        })
    }
}

impl RedbStorage {
    fn commit_ops(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut entries = tx.open_table(ENTRIES).map_err(|e| self.error(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.error(e))?;
            let mut state = tx.open_table(STATE).map_err(|e| self.error(e))?;
            for op in ops {
                match op {
                    Op::PutEntry { stream, seq, value } => {
                        let sealed = seal(&[&entry_key(*stream, *seq)], value);
                        entries
                            .insert((*stream, *seq), sealed.as_slice())
                            .map_err(|e| self.error(e))?;
                    }
                    Op::DeleteEntriesBelow { stream, seq } => {
                        entries
                            .retain_in((*stream, 0)..(*stream, *seq), |_, _| false)
                            .map_err(|e| self.error(e))?;
                    }
                    Op::PutMeta { key, value } => {
                        let sealed = seal(&[key.as_bytes()], value);
                        meta.insert(key.as_str(), sealed.as_slice())
                            .map_err(|e| self.error(e))?;
                    }
                    Op::DeleteMeta { key } => {
                        meta.remove(key.as_str()).map_err(|e| self.error(e))?;
                    }
                    Op::State { owner, changes } => {
                        for (key, value) in changes {
                            let k = (owner.as_str(), key.as_slice());
                            match value {
                                Some(v) => {
                                    let sealed = seal(&[owner.as_bytes(), key], v);
                                    state.insert(k, sealed.as_slice()).map(drop)
                                }
                                None => state.remove(k).map(drop),
                            }
                            .map_err(|e| self.error(e))?;
                        }
                    }
                    Op::ClearState { owner } => {
                        let (from, to) = owner_range(owner);
                        state
                            .retain_in((from.as_str(), &[][..])..(to.as_str(), &[][..]), |_, _| {
                                false
                            })
                            .map_err(|e| self.error(e))?;
                    }
                }
            }
            meta.insert(COMMITS_KEY, &(commits.count + 1).to_le_bytes()[..])
                .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))?;
        commits.count += 1;
        record_commits(&mut commits);
        Ok(())
    }

    fn entry_value(&self, stream: u64, seq: u64, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        unseal(&[&entry_key(stream, seq)], sealed)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| self.damaged(Damage::Entry { stream, seq }))
    }

    fn meta_value(&self, key: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        unseal(&[key.as_bytes()], sealed)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| self.damaged(Damage::Meta(key.to_string())))
    }
}

/// Writes the commit count to the file beside the database (not synced: a
/// crash of the process keeps it, and a power loss only makes it lag).
fn record_commits(commits: &mut Commits) {
    #[cfg(unix)]
    if let Some(file) = &commits.file {
        use std::os::unix::fs::FileExt;
        if let Err(e) = file.write_all_at(&commits.count.to_le_bytes(), 0) {
            tracing::warn!("cannot record the commit count: {e}");
        }
    }
}

/// The checksummed key of an entry.
fn entry_key(stream: u64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&stream.to_le_bytes());
    key[8..].copy_from_slice(&seq.to_le_bytes());
    key
}

/// The key range of one owner's state: `[owner, owner + "\0")`, since no
/// string sorts between the two.
fn owner_range(owner: &str) -> (String, String) {
    (owner.to_string(), format!("{owner}\0"))
}

/// Storage in memory only: nothing survives the process. It is the
/// "in-memory rStreams" side of the durability benchmark, and lets unit tests
/// run without a file.
#[derive(Debug, Default)]
pub struct MemStorage {
    entries: Mutex<std::collections::BTreeMap<(u64, u64), Vec<u8>>>,
    meta: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
    state: Mutex<std::collections::BTreeMap<StateKey, Vec<u8>>>,
}

/// (owner, key) of an in-memory state entry.
type StateKey = (String, Vec<u8>);

impl Storage for MemStorage {
    fn describe(&self) -> String {
        "(memory)".into()
    }

    fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            match op {
                Op::PutEntry { stream, seq, value } => {
                    entries.insert((*stream, *seq), value.to_vec());
                }
                Op::DeleteEntriesBelow { stream, seq } => {
                    let keep = entries.split_off(&(*stream, *seq));
                    entries.retain(|(s, _), _| *s != *stream);
                    entries.extend(keep);
                }
                Op::PutMeta { key, value } => {
                    meta.insert(key.clone(), value.clone());
                }
                Op::DeleteMeta { key } => {
                    meta.remove(key);
                }
                Op::State { owner, changes } => {
                    for (key, value) in changes {
                        let k = (owner.clone(), key.clone());
                        match value {
                            Some(v) => state.insert(k, v.clone()),
                            None => state.remove(&k),
                        };
                    }
                }
                Op::ClearState { owner } => {
                    state.retain(|(o, _), _| o != owner);
                }
            }
        }
        Ok(())
    }

    fn entry(&self, stream: u64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(entries.get(&(stream, seq)).cloned())
    }

    fn entries(
        &self,
        stream: u64,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(entries
            .range((stream, from)..=(stream, u64::MAX))
            .take(limit)
            .map(|((_, seq), v)| (*seq, v.clone()))
            .collect())
    }

    fn next_seq(&self, stream: u64) -> Result<u64, StoreError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(entries
            .range((stream, 0)..=(stream, u64::MAX))
            .next_back()
            .map_or(0, |((_, seq), _)| seq + 1))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        Ok(meta.get(key).cloned())
    }

    fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        Ok(meta
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_state(&self, owner: &str, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (from, to) = owner_range(owner);
        for ((_, k), v) in state.range((from, Vec::new())..(to, Vec::new())) {
            f(k, v);
        }
        Ok(())
    }
}

/// A [`Storage`] in front of another that fails every commit after the first
/// `ok_commits` (for fault-injection tests). A failed commit applies nothing,
/// as a real failed transaction would.
pub struct FaultyStorage<S> {
    inner: S,
    ok_commits: AtomicU64,
    failures: Mutex<u64>,
    /// When set: commits fail while this file exists (a disk that is full
    /// until space is freed), instead of after `ok_commits`.
    full_while: Option<PathBuf>,
}

impl<S> std::fmt::Debug for FaultyStorage<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStorage").finish_non_exhaustive()
    }
}

impl<S: Storage> FaultyStorage<S> {
    /// Lets `ok_commits` commits through, then fails every later one.
    pub fn new(inner: S, ok_commits: u64) -> FaultyStorage<S> {
        FaultyStorage {
            inner,
            ok_commits: AtomicU64::new(ok_commits),
            failures: Mutex::new(0),
            full_while: None,
        }
    }

    /// Fails every commit while `marker` exists, as a full disk would until
    /// space is freed.
    pub fn full_while(inner: S, marker: PathBuf) -> FaultyStorage<S> {
        FaultyStorage {
            full_while: Some(marker),
            ..FaultyStorage::new(inner, u64::MAX)
        }
    }

    fn full(&self) -> bool {
        self.full_while.as_ref().is_some_and(|m| m.exists())
    }

    /// How many commits have failed.
    pub fn failures(&self) -> u64 {
        *self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let left = self
            .ok_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if left.is_err() || self.full() {
            *self.failures.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            return Err(StoreError::Full {
                path: PathBuf::from("<fault injection>"),
                detail: "injected failure: no space left on device".into(),
            });
        }
        self.inner.commit(ops)
    }
    fn entry(&self, stream: u64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.entry(stream, seq)
    }
    fn entries(
        &self,
        stream: u64,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.entries(stream, from, limit)
    }
    fn next_seq(&self, stream: u64) -> Result<u64, StoreError> {
        self.inner.next_seq(stream)
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta(key)
    }
    fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.meta_prefix(prefix)
    }
    fn scan_state(&self, owner: &str, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        self.inner.scan_state(owner, f)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn probe(&self) -> Result<(), StoreError> {
        if self.full() || self.ok_commits.load(Ordering::SeqCst) == 0 {
            return Err(StoreError::Full {
                path: PathBuf::from("<fault injection>"),
                detail: "injected failure: no space left on device".into(),
            });
        }
        self.inner.probe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
