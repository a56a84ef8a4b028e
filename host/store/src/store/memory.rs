//! Storage without a file (the in-memory side of benchmarks, unit tests)
//! and a fault-injecting wrapper in front of any storage.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Op, Storage, StoreError, owner_range};

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

    fn state_values(
        &self,
        owner: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(keys
            .iter()
            .map(|k| state.get(&(owner.to_string(), k.clone())).cloned())
            .collect())
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
    fn state_values(
        &self,
        owner: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner.state_values(owner, keys)
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
