//! rStreams: reliable, sequence-numbered, rewindable streams of entries
//! (batches and CTIs), persisted through [`Storage`] with group commit.
//!
//! - One value per sequence number. Writing the same value again is a no-op
//!   (that is how replay dedups); a different value is a determinism error that
//!   names the stream, the seq and the module versions of both writers.
//! - Writes are queued to one committer thread, which applies everything queued
//!   so far in one transaction (group commit) and then acknowledges them all.
//! - Readers see durable entries only, from any position. Recent entries stay in
//!   memory (the head) so that a reader keeping up never touches the disk; a
//!   reader that falls behind reads from the store.
//! - `gc` deletes entries below a low-water mark so disk use stays bounded.
//! - After a storage failure (e.g. a full disk) the streams refuse further
//!   writes with that reason; everything acknowledged before stays stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::schema::{ColumnSpec, Field, to_specs};
use crate::store::{Op, Storage, StoreError};

mod commit;
mod read;

pub use crate::entry::{END, Entry};
use crate::entry::{END_BYTES, identity};
use commit::commit_loop;

/// How many committed entries per stream stay in memory for readers at the head.
const HEAD_ENTRIES: usize = 256;
/// The most write requests one transaction takes.
const MAX_GROUP: usize = 4096;

/// An entry read back: its seq and encoded bytes.
pub type StoredEntry = (u64, Arc<Vec<u8>>);

/// A stream's catalog record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamInfo {
    /// The stream's id in storage.
    pub id: u64,
    /// The stream's name.
    pub name: String,
    /// The event columns (without the interval columns).
    pub columns: Vec<ColumnSpec>,
    /// For streams fed by ingest: the int64 column holding each event's start.
    #[serde(default)]
    pub time: Option<String>,
    /// For streams fed by ingest: an int64 column holding each event's end.
    #[serde(default)]
    pub end_time: Option<String>,
}

impl StreamInfo {
    /// The event columns as fields.
    pub fn fields(&self) -> Vec<Field> {
        crate::schema::from_specs(&self.columns).unwrap_or_default()
    }
}

/// Why a stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A seq was written twice with different values.
    #[error(
        "determinism violation on stream `{stream}` at seq {seq}: the stored entry was written by \
         {stored_by} and a different one now by {new_by}"
    )]
    Determinism {
        /// The stream.
        stream: String,
        /// The seq.
        seq: u64,
        /// Producer of the stored entry, and what it holds.
        stored_by: String,
        /// Producer of the new entry, and what it holds.
        new_by: String,
    },
    /// The stream exists with another definition.
    #[error("stream `{0}` already exists with different columns or time columns")]
    Exists(String),
    /// No such stream.
    #[error("no stream `{0}` (known streams: {1})")]
    Unknown(String, String),
    /// A write skipped sequence numbers.
    #[error("stream `{stream}`: write at seq {seq} but the next seq is {next}")]
    Gap {
        /// The stream.
        stream: String,
        /// The seq written.
        seq: u64,
        /// The next seq expected.
        next: u64,
    },
    /// Storage failed; the streams accept no more writes.
    #[error(
        "storage failed, so this node accepts no writes until it restarts: {0}. Everything \
         acknowledged before is kept, and after the restart its jobs carry on from their snapshots"
    )]
    Storage(String),
    /// What the file holds for a stream is damaged: it is not served.
    #[error(
        "the data file {path} is damaged: {what}. Weir did not modify it; restore it from a \
         backup, or move it aside to start this node empty"
    )]
    Damaged {
        /// The database file.
        path: String,
        /// What is damaged, naming the stream and seq.
        what: String,
    },
    /// The stream was ended with `weir stream close`.
    #[error("stream `{0}` is closed (its input ended); it takes no more events")]
    Closed(String),
    /// The entries asked for were garbage-collected.
    #[error("stream `{stream}`: seq {seq} was garbage-collected (entries start at {low})")]
    Collected {
        /// The stream.
        stream: String,
        /// The seq asked for.
        seq: u64,
        /// The lowest seq still stored.
        low: u64,
    },
}

impl From<StoreError> for StreamError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Damaged { path, what } => StreamError::Damaged {
                path: path.display().to_string(),
                what: what.to_string(),
            },
            e => StreamError::Storage(e.to_string()),
        }
    }
}

/// A storage error of stream `name`, naming it instead of its id.
fn in_stream(name: &str, e: StoreError) -> StreamError {
    match e {
        StoreError::Damaged { path, what } => StreamError::Damaged {
            path: path.display().to_string(),
            what: what.in_stream(name),
        },
        e => e.into(),
    }
}

struct Head {
    name: String,
    /// Next seq to assign; every seq below was written (maybe not yet durable).
    next: u64,
    /// Every seq below is durable.
    durable: u64,
    /// Entries below were garbage-collected.
    low: u64,
    /// Entries in memory: not yet durable, plus the last few durable ones.
    memory: BTreeMap<u64, Arc<Vec<u8>>>,
    /// The last entry is the end marker.
    closed: bool,
}

impl Head {
    /// Takes `value` as the stream's next entry, queuing its write in `ops`.
    fn push(
        &mut self,
        stream: u64,
        value: Vec<u8>,
        ops: &mut Vec<Op>,
        entries: &mut Vec<(u64, u64)>,
    ) {
        let seq = self.next;
        self.next += 1;
        self.closed = value.as_slice() == END_BYTES;
        let value = Arc::new(value);
        self.memory.insert(seq, value.clone());
        ops.push(Op::PutEntry { stream, seq, value });
        entries.push((stream, seq));
    }
}

struct State {
    catalog: BTreeMap<String, StreamInfo>,
    heads: HashMap<u64, Head>,
    failed: Option<String>,
    /// The failure was a full disk, which ends when space is freed.
    full: bool,
    next_id: u64,
}

impl State {
    /// The name of the stream with id `stream` (for logs), or `#ID`.
    fn name_of(&self, stream: u64) -> String {
        self.catalog
            .values()
            .find(|i| i.id == stream)
            .map_or_else(|| format!("#{stream}"), |i| i.name.clone())
    }

    /// The head of `stream`, if the streams still take writes.
    fn writable(&mut self, stream: u64) -> Result<&mut Head, StreamError> {
        if let Some(reason) = &self.failed {
            return Err(StreamError::Storage(reason.clone()));
        }
        self.heads
            .get_mut(&stream)
            .ok_or_else(|| StreamError::Unknown(format!("#{stream}"), String::new()))
    }
}

struct Request {
    ops: Vec<Op>,
    /// `(stream, seq)` made durable by this request.
    entries: Vec<(u64, u64)>,
    ack: Option<mpsc::Sender<Result<(), String>>>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    state: Mutex<State>,
    changed: Condvar,
    queue: Mutex<Option<mpsc::Sender<Request>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A node's rStreams. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").finish_non_exhaustive()
    }
}

/// Waits for a write to become durable.
#[derive(Debug)]
pub struct Ticket {
    rx: Option<mpsc::Receiver<Result<(), String>>>,
}

impl Ticket {
    /// Blocks until the write is durable, or storage failed.
    pub fn wait(self) -> Result<(), StreamError> {
        match self.rx {
            None => Ok(()),
            Some(rx) => match rx.recv() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StreamError::Storage(e)),
                Err(_) => Err(StreamError::Storage("the committer stopped".into())),
            },
        }
    }
}

/// What a [`Streams::write`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// A new entry.
    New,
    /// The same entry was already there (replay).
    Duplicate,
}

const CATALOG_PREFIX: &str = "stream/";

impl Streams {
    /// Opens the streams kept in `storage` and starts the committer thread.
    pub fn open(storage: Arc<dyn Storage>) -> Result<Streams, StreamError> {
        let mut catalog = BTreeMap::new();
        let mut heads = HashMap::new();
        let mut next_id = 1;
        for (key, value) in storage.meta_prefix(CATALOG_PREFIX)? {
            let info: StreamInfo = serde_json::from_slice(&value)
                .map_err(|e| StreamError::Storage(format!("catalog entry {key}: {e}")))?;
            let named = |e| in_stream(&info.name, e);
            let next = storage.next_seq(info.id).map_err(named)?;
            let low = storage
                .entries(info.id, 0, 1)
                .map_err(named)?
                .first()
                .map_or(next, |(s, _)| *s);
            next_id = next_id.max(info.id + 1);
            let closed = match next.checked_sub(1) {
                Some(last) => storage
                    .entry(info.id, last)
                    .map_err(named)?
                    .is_some_and(|bytes| bytes == END_BYTES),
                None => false,
            };
            heads.insert(
                info.id,
                Head {
                    name: info.name.clone(),
                    next,
                    durable: next,
                    low,
                    memory: BTreeMap::new(),
                    closed,
                },
            );
            catalog.insert(info.name.clone(), info);
        }
        let (tx, rx) = mpsc::channel();
        let streams = Streams {
            inner: Arc::new(Inner {
                storage,
                state: Mutex::new(State {
                    catalog,
                    heads,
                    failed: None,
                    full: false,
                    next_id,
                }),
                changed: Condvar::new(),
                queue: Mutex::new(Some(tx)),
                committer: Mutex::new(None),
            }),
        };
        let weak = Arc::downgrade(&streams.inner);
        let handle = std::thread::Builder::new()
            .name("weir-commit".into())
            .spawn(move || commit_loop(weak, rx))
            .map_err(|e| StreamError::Storage(format!("cannot start the committer: {e}")))?;
        *streams
            .inner
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(streams)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request for the committer and wakes readers of written entries.
    fn submit(&self, request: Request) -> Result<(), StreamError> {
        let queue = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_ref() {
            Some(tx) => tx
                .send(request)
                .map_err(|_| StreamError::Storage("the committer stopped".into()))?,
            None => return Err(StreamError::Storage("the streams are closed".into())),
        }
        self.inner.changed.notify_all();
        Ok(())
    }

    /// Stops the committer after it has written everything queued.
    pub fn close(&self) {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let handle = self
            .inner
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Creates stream `name` (or returns it if it exists with the same fields).
    pub fn create(&self, name: &str, fields: &[Field]) -> Result<StreamInfo, StreamError> {
        self.create_with_time(name, fields, None, None)
    }

    /// Creates an ingest stream whose events' interval comes from `time` (and
    /// `end_time`), or returns it if it exists with the same definition.
    pub fn create_with_time(
        &self,
        name: &str,
        fields: &[Field],
        time: Option<&str>,
        end_time: Option<&str>,
    ) -> Result<StreamInfo, StreamError> {
        let (info, rx) = {
            let mut state = self.lock();
            if let Some(reason) = &state.failed {
                return Err(StreamError::Storage(reason.clone()));
            }
            let columns = to_specs(fields);
            let (time, end_time) = (time.map(str::to_string), end_time.map(str::to_string));
            if let Some(info) = state.catalog.get(name) {
                if info.columns != columns || info.time != time || info.end_time != end_time {
                    return Err(StreamError::Exists(name.to_string()));
                }
                return Ok(info.clone());
            }
            let info = StreamInfo {
                id: state.next_id,
                name: name.to_string(),
                columns,
                time,
                end_time,
            };
            state.next_id += 1;
            state.catalog.insert(name.to_string(), info.clone());
            state.heads.insert(
                info.id,
                Head {
                    name: name.to_string(),
                    next: 0,
                    durable: 0,
                    low: 0,
                    memory: BTreeMap::new(),
                    closed: false,
                },
            );
            let value =
                serde_json::to_vec(&info).map_err(|e| StreamError::Storage(e.to_string()))?;
            let (tx, rx) = mpsc::channel();
            self.submit(Request {
                ops: vec![Op::PutMeta {
                    key: format!("{CATALOG_PREFIX}{name}"),
                    value,
                }],
                entries: Vec::new(),
                ack: Some(tx),
            })?;
            (info, rx)
        };
        Ticket { rx: Some(rx) }.wait()?;
        Ok(info)
    }

    /// The stream named `name`.
    pub fn info(&self, name: &str) -> Result<StreamInfo, StreamError> {
        let state = self.lock();
        state.catalog.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = state.catalog.keys().map(String::as_str).collect();
            StreamError::Unknown(
                name.to_string(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            )
        })
    }

    /// Every stream.
    pub fn list(&self) -> Vec<StreamInfo> {
        self.lock().catalog.values().cloned().collect()
    }

    /// Appends entries at the end of `stream`; returns their first seq and a
    /// ticket that waits until they are durable.
    pub fn append(&self, stream: u64, values: Vec<Vec<u8>>) -> Result<(u64, Ticket), StreamError> {
        self.append_with(stream, values, |_| Vec::new())
    }

    /// Appends entries at the end of `stream` and commits the metadata
    /// `meta(first seq)` in the same transaction (an ingest records its
    /// producer's sequence with the events); returns their first seq and a
    /// ticket that waits until they are durable.
    pub fn append_with(
        &self,
        stream: u64,
        values: Vec<Vec<u8>>,
        meta: impl FnOnce(u64) -> Vec<Op>,
    ) -> Result<(u64, Ticket), StreamError> {
        let mut state = self.lock();
        let head = state.writable(stream)?;
        if head.closed {
            return Err(StreamError::Closed(head.name.clone()));
        }
        let first = head.next;
        let mut ops = Vec::with_capacity(values.len() + 1);
        let mut entries = Vec::with_capacity(values.len());
        for value in values {
            head.push(stream, value, &mut ops, &mut entries);
        }
        ops.extend(meta(first));
        let (tx, rx) = mpsc::channel();
        // Submitted under the lock, so requests reach the committer in seq order.
        self.submit(Request {
            ops,
            entries,
            ack: Some(tx),
        })?;
        Ok((first, Ticket { rx: Some(rx) }))
    }

    /// Appends entries to several streams and commits `meta` with them, all in
    /// one transaction: each `(stream, next, values)` must find the stream at
    /// `next` (a source that records its read position with what it read).
    pub fn append_at(
        &self,
        writes: Vec<(u64, u64, Vec<Vec<u8>>)>,
        meta: Vec<Op>,
    ) -> Result<(), StreamError> {
        let mut state = self.lock();
        for (stream, next, values) in &writes {
            let head = state.writable(*stream)?;
            if head.next < *next {
                return Err(StreamError::Gap {
                    stream: head.name.clone(),
                    seq: *next,
                    next: head.next,
                });
            }
            // Entries a copy of the stream already has (a source resumed
            // from a snapshot kept on another node) must be the same again.
            for (seq, value) in (*next..head.next).zip(values) {
                self.same_again(head, *stream, seq, value)?;
            }
            if head.closed && head.next < *next + values.len() as u64 {
                return Err(StreamError::Closed(head.name.clone()));
            }
        }
        let mut ops = Vec::new();
        let mut entries = Vec::new();
        for (stream, next, values) in writes {
            let head = state.writable(stream)?;
            let have = head.next.saturating_sub(next) as usize;
            for value in values.into_iter().skip(have) {
                head.push(stream, value, &mut ops, &mut entries);
            }
        }
        ops.extend(meta);
        self.submit(Request {
            ops,
            entries,
            ack: None,
        })
    }

    /// Writes entry `seq` of `stream`, as a deterministic writer (a vertex) does:
    /// a seq already written must get the same value again.
    pub fn write(&self, stream: u64, seq: u64, value: Vec<u8>) -> Result<Written, StreamError> {
        Ok(match self.write_from(stream, seq, vec![value])? {
            0 => Written::Duplicate,
            _ => Written::New,
        })
    }

    /// Writes entries `first..` of `stream` as [`Streams::write`] writes
    /// each, in one request to the committer (a copy filling from a batch
    /// pulled from the writer): those below the stream's next seq must be
    /// the same again, the rest are new. A gap, or an entry that differs
    /// from the one stored, writes nothing of the batch. Returns how many
    /// entries were new.
    pub fn write_from(
        &self,
        stream: u64,
        first: u64,
        values: Vec<Vec<u8>>,
    ) -> Result<usize, StreamError> {
        let mut state = self.lock();
        let head = state.writable(stream)?;
        if first > head.next {
            return Err(StreamError::Gap {
                stream: head.name.clone(),
                seq: first,
                next: head.next,
            });
        }
        let have = usize::try_from(head.next - first)
            .unwrap_or(usize::MAX)
            .min(values.len());
        for (seq, value) in (first..).zip(&values[..have]) {
            self.same_again(head, stream, seq, value)?;
        }
        let new = values.len() - have;
        if new == 0 {
            return Ok(0);
        }
        let (mut ops, mut entries) = (Vec::with_capacity(new), Vec::with_capacity(new));
        for value in values.into_iter().skip(have) {
            head.push(stream, value, &mut ops, &mut entries);
        }
        self.submit(Request {
            ops,
            entries,
            ack: None,
        })?;
        Ok(new)
    }

    /// Makes an empty stream begin at `seq`: a copy of a stream written
    /// elsewhere, whose reader needs it from there on, fills from `seq`
    /// instead of from the start the writer no longer holds. Its first
    /// entry then says where it begins after a restart. A stream that has
    /// entries (or had) is left as it is.
    pub fn begin_at(&self, stream: u64, seq: u64) -> Result<(), StreamError> {
        let mut state = self.lock();
        let head = state.writable(stream)?;
        if head.next == 0 {
            head.next = seq;
            head.durable = seq;
            head.low = seq;
            tracing::debug!(stream = %state.name_of(stream), seq, "an empty stream begins at a seq");
        }
        Ok(())
    }

    /// Makes `stream` go on at `seq`, dropping what it holds, when it
    /// ends before `seq`: for a stream whose gaps do not matter (a UDF's
    /// log, whose lines in between were written on another member), or a
    /// copy no reader needs before `seq` (a cluster's ingest stream below
    /// its collection point).
    pub fn skip_to(&self, stream: u64, seq: u64) -> Result<(), StreamError> {
        let mut state = self.lock();
        let head = state.writable(stream)?;
        if seq <= head.next {
            return Ok(());
        }
        let next = std::mem::replace(&mut head.next, seq);
        head.durable = seq;
        head.low = seq;
        head.memory.clear();
        tracing::debug!(stream = %state.name_of(stream), next, seq, "a stream skips to a seq");
        self.submit(Request {
            ops: vec![Op::DeleteEntriesBelow { stream, seq }],
            entries: Vec::new(),
            ack: None,
        })
    }

    /// Empties `stream`, durably, as if it had never held an entry: a copy
    /// whose entries can no longer be trusted (written here by an instance
    /// another member has replaced) fills again from its writer. Nothing
    /// may write it meanwhile.
    pub fn clear(&self, stream: u64) -> Result<(), StreamError> {
        // What was queued before lands first, so it cannot land after.
        self.commit_meta(Vec::new())?.wait()?;
        let (tx, rx) = mpsc::channel();
        {
            let mut state = self.lock();
            let head = state.writable(stream)?;
            (head.next, head.durable, head.low) = (0, 0, 0);
            head.memory.clear();
            head.closed = false;
            tracing::debug!(stream = %state.name_of(stream), "a stream is emptied");
            self.submit(Request {
                ops: vec![Op::DeleteEntriesBelow {
                    stream,
                    seq: u64::MAX,
                }],
                entries: Vec::new(),
                ack: Some(tx),
            })?;
        }
        Ticket { rx: Some(rx) }.wait()
    }

    /// Checks that `value`, written again at `seq` below the stream's next
    /// seq, is what is stored there (a collected entry passes).
    fn same_again(
        &self,
        head: &Head,
        stream: u64,
        seq: u64,
        value: &[u8],
    ) -> Result<(), StreamError> {
        if seq < head.low {
            return Ok(());
        }
        let stored = match head.memory.get(&seq) {
            Some(v) => Some(v.clone()),
            None => self
                .inner
                .storage
                .entry(stream, seq)
                .map_err(|e| in_stream(&head.name, e))?
                .map(Arc::new),
        };
        let Some(stored) = stored else {
            return Ok(());
        };
        let (old_by, old) = identity(&stored);
        let (new_by, new) = identity(value);
        if old == new {
            return Ok(());
        }
        Err(StreamError::Determinism {
            stream: head.name.clone(),
            seq,
            stored_by: format!("{old_by} ({})", crate::entry::describe(&stored)),
            new_by: format!("{new_by} ({})", crate::entry::describe(value)),
        })
    }

    /// Queues `ops` (metadata such as snapshots) behind every write made so far;
    /// the ticket says when they and those writes are durable.
    pub fn commit_meta(&self, ops: Vec<Op>) -> Result<Ticket, StreamError> {
        let state = self.lock();
        if let Some(reason) = &state.failed {
            return Err(StreamError::Storage(reason.clone()));
        }
        let (tx, rx) = mpsc::channel();
        self.submit(Request {
            ops,
            entries: Vec::new(),
            ack: Some(tx),
        })?;
        drop(state);
        Ok(Ticket { rx: Some(rx) })
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StreamError> {
        Ok(self.inner.storage.meta(key)?)
    }

    /// Calls `f` with every keyed-state `(key, value)` of `owner`, in key order.
    pub fn scan_state(
        &self,
        owner: &str,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StreamError> {
        Ok(self.inner.storage.scan_state(owner, f)?)
    }

    /// The values of `keys` of `owner`'s keyed state (`None`: absent).
    pub fn state_values(
        &self,
        owner: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StreamError> {
        Ok(self.inner.storage.state_values(owner, keys)?)
    }

    /// Metadata entries under `prefix`.
    pub fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StreamError> {
        Ok(self.inner.storage.meta_prefix(prefix)?)
    }

    /// Whether `stream` ends with the end CTI: it takes no more entries.
    pub fn closed(&self, stream: u64) -> bool {
        self.lock().heads.get(&stream).is_some_and(|h| h.closed)
    }

    /// `(next seq, durable seq, low-water seq)` of `stream`.
    pub fn positions(&self, stream: u64) -> Option<(u64, u64, u64)> {
        let state = self.lock();
        state.heads.get(&stream).map(|h| (h.next, h.durable, h.low))
    }

    /// Deletes entries of `stream` below `seq` (all readers are past it),
    /// keeping at least the newest.
    pub fn gc(&self, stream: u64, seq: u64) -> Result<(), StreamError> {
        let mut state = self.lock();
        let Some(head) = state.heads.get_mut(&stream) else {
            return Ok(());
        };
        // The newest entry is always kept: it tells a restarted node the
        // stream's next seq, and whether the stream was closed.
        let seq = seq.min(head.durable.saturating_sub(1));
        if seq <= head.low {
            return Ok(());
        }
        head.low = seq;
        head.memory = head.memory.split_off(&seq);
        tracing::trace!(stream = %state.name_of(stream), seq, "collected below a seq");
        self.submit(Request {
            ops: vec![Op::DeleteEntriesBelow { stream, seq }],
            entries: Vec::new(),
            ack: None,
        })
    }

    /// Whether storage failed because the disk was full (a failure that
    /// ends when space is freed).
    pub fn failed_full(&self) -> bool {
        self.lock().full
    }

    /// Whether writes would succeed again after a storage failure.
    pub fn probe(&self) -> Result<(), StreamError> {
        Ok(self.inner.storage.probe()?)
    }

    /// Why the streams refuse writes, if they do.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }
}

#[cfg(test)]
mod tests;
