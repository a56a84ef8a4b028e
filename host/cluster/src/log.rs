//! The coordinator's Raft log and state machine in redb (`cluster.redb` in
//! the node's data directory): the log's entries, the vote, the committed
//! and purged positions, and the applied metadata with its latest snapshot,
//! each written in one durable transaction before it is reported done.

// The error type is openraft's, fixed by the traits this module implements.
#![allow(clippy::result_large_err)]

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::metadata::{Metadata, NodeId, Reply};
use crate::{ClusterError, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Log entries by index, as JSON.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Everything else, as JSON, by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
const APPLIED: &str = "applied";
const SNAPSHOT: &str = "snapshot";
const NODE_ID: &str = "node_id";

/// Where a node keeps its coordinator state.
pub fn database_path(data: &Path) -> std::path::PathBuf {
    data.join("cluster.redb")
}

/// The metadata as applied, with the Raft position it reflects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// The last log entry applied.
    pub log_id: Option<LogId<NodeId>>,
    /// The membership as of that entry.
    pub membership: StoredMembership<NodeId, openraft::BasicNode>,
    /// The metadata.
    pub metadata: Metadata,
}

/// A snapshot as stored: its meta and the applied state it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The redb file both halves share.
#[derive(Debug, Clone)]
pub struct RaftFile {
    db: Arc<Database>,
}

impl RaftFile {
    /// Opens (or creates) `path`.
    pub fn open(path: &Path) -> Result<RaftFile, ClusterError> {
        let db = Database::create(path).map_err(|e| ClusterError::Storage {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let file = RaftFile { db: Arc::new(db) };
        // Both tables exist from the start, so reads never meet a missing one.
        file.write(|_, _| Ok(()))
            .map_err(|e| ClusterError::Storage {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        Ok(file)
    }

    /// This node's member id, once it has one.
    pub fn node_id(&self) -> Result<Option<NodeId>, ClusterError> {
        self.get(NODE_ID).map_err(storage)
    }

    /// Records this node's member id.
    pub fn set_node_id(&self, id: NodeId) -> Result<(), ClusterError> {
        self.write(|_, meta| put(meta, NODE_ID, &id))
            .map_err(storage)
    }

    fn get<T: for<'de> Deserialize<'de>>(&self, key: &str) -> StorageResult<Option<T>> {
        let read = self.db.begin_read().map_err(read_err)?;
        let table = read.open_table(META).map_err(read_err)?;
        let Some(value) = table.get(key).map_err(read_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| StorageIOError::read(&e).into())
    }

    /// Runs `f` in one durable write transaction.
    fn write(
        &self,
        f: impl FnOnce(
            &mut redb::Table<'_, u64, &[u8]>,
            &mut redb::Table<'_, &str, &[u8]>,
        ) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut log = txn.open_table(LOG).map_err(write_err)?;
            let mut meta = txn.open_table(META).map_err(write_err)?;
            f(&mut log, &mut meta)?;
        }
        txn.commit().map_err(write_err)?;
        Ok(())
    }

    /// Runs `f`, one durable write transaction, on tokio's blocking
    /// threads: its fsync waits for the disk, and a busy disk must not hold
    /// up the runtime's workers, which carry the heartbeats and every
    /// connection of the node (two writes waiting at once stopped a 2-core
    /// node's runtime for seconds, and its peers declared it lost).
    async fn write_off(
        &self,
        f: impl FnOnce(
            &mut redb::Table<'_, u64, &[u8]>,
            &mut redb::Table<'_, &str, &[u8]>,
        ) -> StorageResult<()>
        + Send
        + 'static,
    ) -> StorageResult<()> {
        let file = self.clone();
        tokio::task::spawn_blocking(move || file.write(f))
            .await
            .map_err(|e| StorageIOError::write(&e))?
    }

    /// The log store and the state machine over this file.
    pub fn open_raft(&self) -> Result<(LogStore, StateMachine), ClusterError> {
        let applied: Applied = self.get(APPLIED).map_err(storage)?.unwrap_or_default();
        let machine = StateMachine {
            file: self.clone(),
            applied: Arc::new(RwLock::new(applied)),
        };
        Ok((LogStore { file: self.clone() }, machine))
    }
}

fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::read(&e).into()
}

fn write_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
}

fn storage(e: StorageError<NodeId>) -> ClusterError {
    ClusterError::Storage {
        path: "cluster.redb".into(),
        detail: e.to_string(),
    }
}

fn put<T: Serialize>(
    meta: &mut redb::Table<'_, &str, &[u8]>,
    key: &str,
    value: &T,
) -> StorageResult<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| StorageIOError::write(&e))?;
    meta.insert(key, bytes.as_slice()).map_err(write_err)?;
    Ok(())
}

/// The Raft log.
#[derive(Debug, Clone)]
pub struct LogStore {
    file: RaftFile,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let read = self.file.db.begin_read().map_err(read_err)?;
        let table = read.open_table(LOG).map_err(read_err)?;
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let mut entries = Vec::new();
        for item in table.range::<u64>((bounds.0, bounds.1)).map_err(read_err)? {
            let (_, value) = item.map_err(read_err)?;
            entries.push(
                serde_json::from_slice(value.value()).map_err(|e| StorageIOError::read_logs(&e))?,
            );
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let purged: Option<LogId<NodeId>> = self.file.get(PURGED)?;
        let read = self.file.db.begin_read().map_err(read_err)?;
        let table = read.open_table(LOG).map_err(read_err)?;
        let last = match table.last().map_err(read_err)? {
            Some((_, value)) => {
                let entry: Entry<TypeConfig> = serde_json::from_slice(value.value())
                    .map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let vote = *vote;
        self.file
            .write_off(move |_, meta| put(meta, VOTE, &vote))
            .await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.file.get(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.file
            .write_off(move |_, meta| put(meta, COMMITTED, &committed))
            .await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.file.get::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let result = self
            .file
            .write_off(move |log, _| {
                for entry in entries {
                    let bytes = serde_json::to_vec(&entry)
                        .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
                    log.insert(entry.log_id.index, bytes.as_slice())
                        .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
                }
                Ok(())
            })
            .await;
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.remove((Bound::Included(log_id.index), Bound::Unbounded), None)
            .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.remove(
            (Bound::Unbounded, Bound::Included(log_id.index)),
            Some(log_id),
        )
        .await
    }
}

impl LogStore {
    /// Deletes the entries in `range`; a purge records how far it went in
    /// the same transaction.
    async fn remove(
        &self,
        range: (Bound<u64>, Bound<u64>),
        purged: Option<LogId<NodeId>>,
    ) -> StorageResult<()> {
        self.file
            .write_off(move |log, meta| {
                let keys: Vec<u64> = log
                    .range::<u64>(range)
                    .map_err(write_err)?
                    .map(|item| item.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()
                    .map_err(write_err)?;
                for key in keys {
                    log.remove(key).map_err(write_err)?;
                }
                if let Some(purged) = purged {
                    put(meta, PURGED, &purged)?;
                }
                Ok(())
            })
            .await
    }
}

/// The metadata state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    file: RaftFile,
    applied: Arc<RwLock<Applied>>,
}

impl StateMachine {
    /// The applied state, shared with whoever reads the metadata.
    pub fn applied(&self) -> Arc<RwLock<Applied>> {
        self.applied.clone()
    }

    fn view(&self) -> Applied {
        self.applied
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stores `state` durably, then makes it the applied state.
    async fn store(&self, state: Applied) -> StorageResult<()> {
        let bytes = serde_json::to_vec(&state).map_err(|e| StorageIOError::write(&e))?;
        self.file
            .write_off(move |_, meta| {
                meta.insert(APPLIED, bytes.as_slice()).map_err(write_err)?;
                Ok(())
            })
            .await?;
        *self.applied.write().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let state = self.view();
        let data =
            serde_json::to_vec(&state).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let id = match state.log_id {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".into(),
        };
        let meta = SnapshotMeta {
            last_log_id: state.log_id,
            last_membership: state.membership.clone(),
            snapshot_id: id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.file
            .write_off(move |_, m| put(m, SNAPSHOT, &stored))
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, openraft::BasicNode>,
    )> {
        let state = self.view();
        Ok((state.log_id, state.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Reply>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.view();
        let mut replies = Vec::new();
        for entry in entries {
            state.log_id = Some(entry.log_id);
            replies.push(match entry.payload {
                EntryPayload::Blank => Reply::Done,
                EntryPayload::Normal(command) => state.metadata.apply(&command),
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Reply::Done
                }
            });
        }
        self.store(state).await?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Vec<u8>>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Vec<u8>>,
    ) -> StorageResult<()> {
        let state: Applied = serde_json::from_slice(&snapshot)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: *snapshot,
        };
        self.file
            .write_off(move |_, m| put(m, SNAPSHOT, &stored))
            .await?;
        self.store(state).await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self
            .file
            .get::<StoredSnapshot>(SNAPSHOT)?
            .map(|s| Snapshot {
                meta: s.meta,
                snapshot: Box::new(s.data),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Builder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir>
        for Builder
    {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
            let file = RaftFile::open(&database_path(dir.path()))
                .map_err(|e| StorageIOError::write(&e))?;
            let (log, machine) = file.open_raft().map_err(|e| StorageIOError::write(&e))?;
            Ok((dir, log, machine))
        }
    }

    /// openraft's own conformance suite for log stores and state machines,
    /// run against the redb file.
    #[test]
    fn the_redb_store_passes_openrafts_suite() {
        openraft::testing::Suite::test_all(Builder).unwrap();
    }

    /// What was applied is there after the file is reopened.
    #[test]
    fn applied_metadata_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = database_path(dir.path());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let file = RaftFile::open(&path).unwrap();
            file.set_node_id(3).unwrap();
            let (_, mut machine) = file.open_raft().unwrap();
            let entry = Entry::<TypeConfig> {
                log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
                payload: EntryPayload::Normal(crate::metadata::Command::Join {
                    addr: "127.0.0.1:7001".into(),
                    id: None,
                    nonce: 0,
                }),
            };
            let replies = runtime.block_on(machine.apply([entry])).unwrap();
            assert_eq!(
                replies,
                vec![Reply::Joined {
                    id: 2,
                    replaced: None
                }]
            );
        }
        let file = RaftFile::open(&path).unwrap();
        assert_eq!(file.node_id().unwrap(), Some(3));
        let (_, machine) = file.open_raft().unwrap();
        let applied = machine.view();
        assert_eq!(applied.log_id.map(|l| l.index), Some(1));
        assert_eq!(applied.metadata.members[&2].addr, "127.0.0.1:7001");
    }
}
