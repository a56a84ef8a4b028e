//! Wiring a placed job's streams between members: which streams this
//! member fetches from the members that write them, and which holds it
//! keeps for the copies other members make of the streams written here.

use std::collections::BTreeSet;

use weir_cluster::jobs::ClusterJob;
use weir_cluster::metadata::NodeId;

use super::exchange::{Fetch, Writer};
use super::*;
use crate::jobs::JobRecord;

/// The reader name a member's copy of a job stream pulls under.
pub(super) fn reader_name(record: &JobRecord, stream: &str, member: NodeId) -> String {
    format!("pull/{}/{stream}@{member}", record.prefix())
}

/// The reader name under which `member`, running a vertex, holds the
/// vertex's stream on the members running its replicas or duplicate: they
/// keep what it keeps, as any of them may take its place.
pub(super) fn writer_reader(member: NodeId) -> String {
    format!("writer/{member}")
}

/// The reader name under which `member` copies stream `full` as a backup.
pub(super) fn backup_reader(full: &str, member: NodeId) -> String {
    format!("backup/{full}@{member}")
}

impl Node {
    /// Holds the streams of this member's vertices of `job` for the
    /// members that read them, and returns the streams to fetch
    /// ([`Node::fetches_of`]).
    pub(super) fn wire_placed(
        &self,
        job: &ClusterJob,
        record: &JobRecord,
        me: NodeId,
    ) -> Result<Vec<Fetch>> {
        let vertices = self.jobs.vertices_of(record)?;
        let mine = record.only.clone().unwrap_or_default();
        let placed = |v: &str| job.placement.get(v).copied();
        // The members that pull `stream` for their instance of `reader`:
        // those running one but no instance of the stream's writer.
        let pulling = |reader: &str, stream: &str| {
            let writers = job.instances(stream);
            let mut readers = job.instances(reader);
            readers.retain(|m| *m != me && !writers.contains(m));
            readers
        };
        // Nothing a remote copy lacks is collected before it asks.
        for v in &vertices {
            for stream in v.reads.iter().filter(|s| mine.contains(*s)) {
                let id = self.streams.info(&record.stream(stream))?.id;
                for reader in pulling(&v.name, stream) {
                    self.jobs.hold(id, &reader_name(record, stream, reader), 0);
                }
            }
        }
        // The copies other members make of the streams written here: the
        // readers' and the backup's; those of members that no longer read
        // one hold nothing back.
        for v in vertices
            .iter()
            .filter(|v| v.writes && mine.contains(&v.name))
        {
            let stream = record.stream(&v.name);
            let readers: BTreeSet<NodeId> = vertices
                .iter()
                .filter(|r| r.reads.contains(&v.name))
                .flat_map(|r| pulling(&r.name, &v.name))
                .collect();
            let keep: BTreeSet<String> = readers
                .iter()
                .map(|m| reader_name(record, &v.name, *m))
                .collect();
            // A replica or duplicate here keeps what the member running
            // the vertex keeps: until that member says how far, what this
            // member still holds.
            let writer = placed(&v.name).filter(|w| *w != me);
            for (full, dead) in [(stream.clone(), false), (format!("{stream}.dead"), true)] {
                let mut keep = keep.clone();
                // The copies that pull it from here (a vertex's changes
                // wait for them, see `pulled`): the readers' of its
                // output, and the backup's, unless the backup's member
                // reads it (one copy there).
                let mut pull = if dead { BTreeSet::new() } else { keep.clone() };
                // A previous backup, while the new one is not ready, too.
                let backups = [job.backups.get(&v.name), job.handing.get(&v.name)];
                let mut copying = Vec::new();
                for b in backups.into_iter().flatten() {
                    let reader = backup_reader(&full, *b);
                    keep.insert(reader.clone());
                    if dead || !readers.contains(b) {
                        pull.insert(reader.clone());
                        copying.push(reader);
                    }
                }
                self.pulled.expect(&full, pull);
                let id = self.streams.info(&full)?.id;
                // Nothing a backup's copy lacks is collected before it
                // asks: its first snapshot begins the copy at what this
                // member held then, and a pull from there must be served.
                let low = self.streams.positions(id).map_or(0, |p| p.2);
                for reader in copying {
                    self.jobs.hold_from(id, &reader, low);
                }
                if let Some(w) = writer {
                    self.jobs.hold_from(id, &writer_reader(w), low);
                    keep.insert(writer_reader(w));
                }
                self.jobs.keep_copies(id, &keep);
            }
        }
        // The streams written on other members: what this member kept for
        // other members' copies when it wrote one holds nothing back now.
        for v in vertices
            .iter()
            .filter(|v| v.writes && !mine.contains(&v.name))
        {
            let stream = record.stream(&v.name);
            for full in [stream.clone(), format!("{stream}.dead")] {
                if let Ok(info) = self.streams.info(&full) {
                    self.jobs.forget_copies_held(info.id);
                }
            }
        }
        self.fetches_of(job, record, me)
    }

    /// The streams this member fetches for its part of `job` (`record`):
    /// the inputs its vertices read from other members, the cluster's
    /// ingest streams they read, and the output of the vertices it backs
    /// up (one copy of a stream serves both a reader and the backup).
    /// Changes nothing.
    pub(super) fn fetches_of(
        &self,
        job: &ClusterJob,
        record: &JobRecord,
        me: NodeId,
    ) -> Result<Vec<Fetch>> {
        let vertices = self.jobs.vertices_of(record)?;
        let mine = record.only.clone().unwrap_or_default();
        let backs = record.backs.clone().unwrap_or_default();
        let placed = |v: &str| job.placement.get(v).copied();
        // The members running replicas of `writer`, told how far a copy
        // here holds its stream.
        let replicas = |writer: &str| -> Vec<NodeId> {
            let own = placed(writer);
            job.instances(writer)
                .into_iter()
                .filter(|m| *m != me && Some(*m) != own)
                .collect()
        };
        let mut fetches = Vec::new();
        let mut seen = BTreeSet::new();
        for v in vertices.iter().filter(|v| mine.contains(&v.name)) {
            // A duplicate or replica here writes what the readers here read.
            for stream in v.reads.iter().filter(|s| !mine.contains(*s)) {
                if placed(stream) != Some(me) && seen.insert(stream.clone()) {
                    fetches.push(Fetch {
                        job: record.name.clone(),
                        id: record.id,
                        stream: record.stream(stream),
                        writer: Writer::Vertex(stream.clone()),
                        reader: reader_name(record, stream, me),
                        replicas: replicas(stream),
                    });
                }
            }
        }
        // The cluster's ingest streams read here, copied from their primary.
        for v in vertices.iter().filter(|v| mine.contains(&v.name)) {
            let Some(stream) = &v.ingest else { continue };
            if seen.insert(format!("ingest {stream}")) {
                fetches.push(Fetch {
                    job: record.name.clone(),
                    id: record.id,
                    stream: stream.clone(),
                    writer: Writer::Ingest(stream.clone()),
                    reader: reader_name(record, stream, me),
                    replicas: Vec::new(),
                });
            }
        }
        // The output streams of the vertices backed up here, copied from
        // the member that runs them, and a UDF stage's log.
        for v in vertices
            .iter()
            .filter(|v| v.writes && backs.contains(&v.name))
        {
            let stream = record.stream(&v.name);
            let dead = format!("{stream}.dead");
            let logs = format!("{stream}.logs");
            let mut copies = vec![(v.name.clone(), stream), (format!("{}.dead", v.name), dead)];
            if self.streams.info(&logs).is_ok() {
                copies.push((format!("{}.logs", v.name), logs));
            }
            for (name, full) in copies {
                if seen.insert(name) {
                    fetches.push(Fetch {
                        job: record.name.clone(),
                        id: record.id,
                        reader: backup_reader(&full, me),
                        stream: full,
                        writer: Writer::Vertex(v.name.clone()),
                        replicas: Vec::new(),
                    });
                }
            }
        }
        Ok(fetches)
    }
}
