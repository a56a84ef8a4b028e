//! The redb file: every value sealed with a CRC-32 of its key and bytes,
//! redb's assertion panics turned into damage errors, and a commit count
//! kept beside the file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Damage, Op, PROBE_BYTES, Storage, StoreError, owner_range};

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
const FORMAT: &[u8] =
    b"4: crc32 per value, segments in snapshots, traps, fuel and log numbers in stage counts";

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

    fn state_values(
        &self,
        owner: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = tx.open_table(STATE).map_err(|e| self.error(e))?;
            keys.iter()
                .map(|key| {
                    let Some(v) = table
                        .get((owner, key.as_slice()))
                        .map_err(|e| self.error(e))?
                    else {
                        return Ok(None);
                    };
                    let value = unseal(&[owner.as_bytes(), key], v.value()).ok_or_else(|| {
                        self.damaged(Damage::State {
                            owner: owner.to_string(),
                            key: hex(key),
                        })
                    })?;
                    Ok(Some(value.to_vec()))
                })
                .collect()
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
