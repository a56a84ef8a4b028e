//! Backups of a placed job's vertices on another member. The member that
//! backs up a vertex keeps a copy of its output streams (filled like any
//! copy, see `node::exchange`) and, every round, its latest snapshot: the
//! snapshot record, keyed state, patch timeline, queued changes and cluster
//! change marker, or a source's or sink's position. It stores a snapshot only
//! once its copies hold everything the snapshot says the vertex wrote, so a
//! vertex that moves there resumes from it and rewrites nothing a reader
//! could lack. The member that runs the vertex keeps the vertex's inputs
//! from the positions of the snapshot its backup stored last, not from its
//! own latest: those are what a move resumes from.

use std::collections::{BTreeMap, BTreeSet};

use super::resumes::{Resume, resume_of, resume_reader};
use super::*;

/// The reader under which a backup's copy of a vertex's output keeps what
/// the member running the vertex still keeps.
/// (Once the vertex runs here, the stream is no copy and this goes.)
const BACKUP_HOLD: &str = "backup/copy";

/// How often a snapshot is read again before the backup is told to ask later.
const MAX_READS: u32 = 20;

/// A vertex's latest snapshot as its backup stores it.
#[derive(Debug, Serialize, Deserialize)]
pub struct VertexBackup {
    /// Every metadata key of the vertex, with its value (`None`: absent).
    meta: Vec<(String, Option<Vec<u8>>)>,
    /// The owner of its keyed state, and every `(key, value)` of it, or
    /// the keys changed since snapshot `since` (`None`: deleted).
    state: Option<(String, StateChanges)>,
    /// The snapshot whose state `state` changes (`None`: it is the whole
    /// state).
    since: Option<u64>,
    /// The snapshot's number (a stage's).
    id: Option<u64>,
    /// The next seq of its output and dead-letter streams the snapshot
    /// stands for (a sink writes none).
    wrote: Option<(u64, u64)>,
    /// The positions in its inputs it resumes from.
    inputs: Vec<u64>,
    /// The lowest seq the member that runs it keeps of its output stream.
    low: u64,
}

/// Who asks for a snapshot of a vertex running here, as this member sees
/// it.
#[derive(Debug, Clone, Default)]
pub struct Asker {
    /// The asking member (`None`: one that does not say; what it holds
    /// then counts alone).
    pub member: Option<u64>,
    /// The members that back the vertex up now: its backup, and the
    /// previous one while the new one is not ready. Only theirs count.
    pub backing: Vec<u64>,
    /// Whether the coordinator counts a snapshot of the vertex stored:
    /// until then its inputs are kept from their start, whatever a backup
    /// holds.
    pub counted: bool,
}

/// The input streams of a vertex running here, and per member backing it
/// up the positions its snapshot resumes from: the stored one, or the one
/// sent to a backup that has stored none yet (it stores that or a newer
/// one). The inputs are kept from the lowest, so that whichever backup
/// the vertex moves to can resume it.
#[derive(Debug, Clone, Default)]
pub(super) struct Backed {
    inputs: Vec<u64>,
    holds: BTreeMap<u64, Vec<u64>>,
}

impl Backed {
    fn of((key, inputs): (String, Vec<u64>)) -> (String, Backed) {
        let holds = BTreeMap::new();
        (key, Backed { inputs, holds })
    }

    /// `asker` holds a snapshot resuming from `positions`.
    fn hold(&mut self, asker: &Asker, positions: &[u64]) {
        match asker.member {
            Some(member) => {
                self.holds.retain(|m, _| asker.backing.contains(m));
                if asker.backing.contains(&member) && !positions.is_empty() {
                    self.holds.insert(member, positions.to_vec());
                }
            }
            None => {
                self.holds.clear();
                self.holds.insert(u64::MAX, positions.to_vec());
            }
        }
    }

    /// The lowest position of each input over the backups' snapshots.
    fn lowest(&self) -> Option<Vec<u64>> {
        let mut holds = self.holds.values();
        let mut low = holds.next()?.clone();
        for h in holds {
            for (l, p) in low.iter_mut().zip(h) {
                *l = (*l).min(*p);
            }
        }
        Some(low)
    }
}

/// What became of a snapshot sent to a vertex's backup.
#[derive(Debug)]
pub enum Stored {
    /// Stored; the vertex resumes from these input positions, and its
    /// snapshot's number (a stage's) is the one the next may change.
    Resumes(Vec<u64>, Option<u64>),
    /// Not yet: this node's copies of the vertex's output lack entries the
    /// snapshot stands for. They hold up to `copied` (output, dead
    /// letters), the snapshot wrote up to `want`: a copy that does not
    /// fill (its writer has collected where it goes on) waits for a newer
    /// snapshot, which begins it further on.
    Behind {
        copied: (u64, u64),
        want: (u64, u64),
    },
    /// Not this one: this node's copy of an input no longer holds what
    /// the vertex would read from the snapshot on. A newer one may do.
    Stale,
    /// This node no longer backs the vertex up.
    NotBacked,
    /// Not this one: it was written where the vertex no longer runs.
    Left,
}

/// What a vertex's snapshot is made of.
pub(super) enum Kind {
    /// A file or Nexmark source: a [`FilePosition`].
    Source,
    /// A stage (or ingest source): a [`VertexSnapshot`] with keyed state.
    Stage,
    /// A sink: a [`SinkPosition`].
    Sink,
}

impl Jobs {
    /// The metadata keys of `vertex` of a job, and what they hold.
    pub(super) fn vertex_keys(
        &self,
        record: &JobRecord,
        vertex: &str,
    ) -> Result<(Vec<String>, Kind)> {
        let plan = self.record_plan(record)?;
        let prefix = record.prefix();
        if let Some(i) = vertex
            .strip_prefix("sink")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < plan.sinks.len())
        {
            return Ok((vec![format!("{SINKS}{prefix}/{i}")], Kind::Sink));
        }
        if let Some(s) = plan.sources.iter().find(|s| s.name == vertex)
            && !matches!(s.origin, SourceOrigin::Stream(_))
        {
            let key = format!("{FILES}{prefix}/{vertex}");
            return Ok((vec![ending_key(&key), key], Kind::Source));
        }
        if !plan.sources.iter().any(|s| s.name == vertex)
            && !plan.stages.iter().any(|s| s.name == vertex)
        {
            bail!(Job, "job `{}` has no vertex `{vertex}`", record.name);
        }
        let key = format!("{SNAPSHOTS}{prefix}/{vertex}");
        Ok((
            vec![
                timeline_key(&key),
                queue_key(&key),
                format!("{CHANGES}{prefix}/{vertex}"),
                key,
            ],
            Kind::Stage,
        ))
    }

    /// Forgets the snapshot of `vertex` of job `record` kept here (its
    /// own, from when it ran here, or a backup's): the copies of its
    /// streams it stood on were emptied, so the vertex resumes here only
    /// from a snapshot stored anew.
    pub fn forget_snapshot(&self, record: &JobRecord, vertex: &str) -> Result<()> {
        let (keys, kind) = self.vertex_keys(record, vertex)?;
        let mut ops: Vec<Op> = keys
            .iter()
            .map(|key| Op::DeleteMeta { key: key.clone() })
            .collect();
        if let (Kind::Stage, Some(owner)) = (kind, keys.last()) {
            ops.push(Op::ClearState {
                owner: owner.clone(),
            });
            self.forget_changed(|key| key == owner);
        }
        self.inner.streams.commit_meta(ops)?.wait()?;
        Ok(())
    }

    /// The placed job `job` incarnation `id` running here, by its record.
    pub(super) fn placed_record(&self, job: &str, id: u64) -> Result<JobRecord> {
        lock(&self.inner.running)
            .get(job)
            .map(|r| r.record.clone())
            .filter(|r| r.id == id && r.only.is_some())
            .with_context(|| format!("incarnation {id} of job `{job}` does not run here"))
    }

    /// The latest snapshot of `vertex` of job `job` (incarnation `id`),
    /// which runs here, for its backup `asker`; `have`: the input
    /// positions of the one the backup stored last (none: it holds the
    /// one sent now, or a newer one, next), which this node keeps from now
    /// on; `since`: that snapshot's number, when the backup holds its keyed
    /// state (only the keys changed after it are sent, if known here).
    pub fn backup_of(
        &self,
        job: &str,
        id: u64,
        vertex: &str,
        (asker, have): (&Asker, Option<Vec<u64>>),
        since: Option<u64>,
    ) -> Result<Vec<u8>> {
        let record = self.placed_record(job, id)?;
        if !record.only.as_ref().is_some_and(|o| o.contains(vertex)) {
            bail!(Job, "vertex `{vertex}` of job `{job}` does not run here");
        }
        let (keys, kind) = self.vertex_keys(&record, vertex)?;
        let snapshot_key = keys.last().cloned().unwrap_or_default();
        let first = have.is_none();
        if let Some(positions) = have.filter(|_| asker.counted) {
            self.backed_up(&snapshot_key, asker, &positions);
        }
        let streams = &self.inner.streams;
        let read_meta = || -> Result<Vec<(String, Option<Vec<u8>>)>> {
            keys.iter()
                .map(|k| Ok((k.clone(), streams.meta(k)?)))
                .collect()
        };
        // The keyed state is read apart from the records: read again until
        // no commit of the vertex came in between.
        let mut tries = 0;
        let (meta, state) = loop {
            tries += 1;
            if tries > MAX_READS {
                bail!(
                    Job,
                    "vertex `{vertex}` of job `{job}` snapshots faster than its snapshot can be read; the backup asks again"
                );
            }
            let before = read_meta()?;
            let state = match kind {
                Kind::Stage => Some(self.state_for_backup(&snapshot_key, since)?),
                _ => None,
            };
            if read_meta()? == before {
                break (before, state);
            }
        };
        let value = meta.last().and_then(|(_, v)| v.as_deref());
        let Resume {
            wrote,
            inputs,
            snapshot,
        } = resume_of(&snapshot_key, &kind, value)?;
        let (state, since) = match state {
            Some((changes, since)) => (Some((snapshot_key.clone(), changes)), since),
            None => (None, None),
        };
        let low = streams
            .info(&record.stream(vertex))
            .ok()
            .and_then(|i| streams.positions(i.id))
            .map_or(0, |p| p.2);
        let keys = state.as_ref().map_or(0, |(_, s)| s.len() as u64);
        let backup = VertexBackup {
            meta,
            state,
            since,
            id: snapshot,
            wrote,
            inputs,
            low,
        };
        let bytes = postcard::to_allocvec(&backup)?;
        if first && asker.counted {
            self.backed_up(&snapshot_key, asker, &backup.inputs);
        }
        self.sent_backup(
            &format!("{}/{vertex}", record.prefix()),
            BackupSent {
                snapshot: snapshot.unwrap_or_default(),
                keys,
                whole: since.is_none(),
                since,
                bytes: bytes.len() as u64,
            },
        );
        Ok(bytes)
    }

    /// How far this node's copies of the output and dead letters of
    /// vertex `vertex` of placed job `job` (incarnation `id`) are durable.
    pub fn backup_copies(&self, job: &str, id: u64, vertex: &str) -> Result<(u64, u64)> {
        let record = self.placed_record(job, id)?;
        let streams = &self.inner.streams;
        let out = streams.info(&record.stream(vertex))?.id;
        let dead = streams.info(&format!("{}.dead", record.stream(vertex)))?.id;
        Ok(self.durable_copies(out, dead))
    }

    fn durable_copies(&self, out: u64, dead: u64) -> (u64, u64) {
        let durable = |stream| self.inner.streams.positions(stream).map_or(0, |p| p.1);
        (durable(out), durable(dead))
    }

    /// Stores the snapshot of `vertex` of job `job` (incarnation `id`)
    /// that the member running it sent, if this node backs the vertex up
    /// and its copies of the vertex's streams hold all the snapshot stands
    /// for.
    pub fn store_backup(&self, job: &str, id: u64, vertex: &str, bytes: &[u8]) -> Result<Stored> {
        let _stores = lock(&self.inner.stores);
        let record = self.placed_record(job, id)?;
        if !record.backs.as_ref().is_some_and(|b| b.contains(vertex)) {
            return Ok(Stored::NotBacked);
        }
        let backup: VertexBackup = postcard::from_bytes(bytes).map_err(|e| {
            err!(
                Job,
                "the snapshot of vertex `{vertex}` of job `{job}` does not decode: {e}"
            )
        })?;
        let streams = &self.inner.streams;
        if let Some((output, dead)) = backup.wrote {
            let out = streams.info(&record.stream(vertex))?.id;
            let dead_stream = streams.info(&format!("{}.dead", record.stream(vertex)))?.id;
            // A copy made after the writer collected its start begins at
            // what the writer still holds.
            self.copy_from(out, backup.low, true)?;
            self.reader_at(out, BACKUP_HOLD, backup.low);
            let copied = self.durable_copies(out, dead_stream);
            if copied.0 < output || copied.1 < dead {
                let want = (output, dead);
                tracing::debug!(
                    job,
                    vertex,
                    ?copied,
                    ?want,
                    "a backup's copy is behind the snapshot"
                );
                return Ok(Stored::Behind { copied, want });
            }
        }
        // The vertex would resume here from the snapshot's input
        // positions: a copy of an input collected past one (the snapshot
        // waited for the copies of the output while the vertex ran on) can
        // no longer give it what it read there. A newer snapshot is asked
        // for; the one stored before stays, its inputs held.
        let reader = resume_reader(&record, vertex);
        let reads = self.backed_reads(&record, vertex, &reader)?;
        for (input, pos) in reads.iter().zip(&backup.inputs) {
            let held = streams
                .info(&record.stream(input))
                .ok()
                .and_then(|i| streams.positions(i.id));
            if let Some((next, _, low)) = held
                && next > 0
                && low > *pos
            {
                tracing::debug!(
                    job,
                    vertex,
                    input,
                    pos,
                    low,
                    "a backup's snapshot reads an input from below what this member's copy still holds"
                );
                return Ok(Stored::Stale);
            }
        }
        let mut ops = Vec::new();
        if let Some((owner, changes)) = backup.state {
            match backup.since {
                // Changes to the state of snapshot `since`: this member
                // must hold that one.
                Some(since) => {
                    let held = streams
                        .meta(&owner)?
                        .and_then(|v| postcard::from_bytes::<VertexSnapshot>(&v).ok())
                        .map(|s| s.id);
                    if held != Some(since) {
                        bail!(
                            Job,
                            "the snapshot of vertex `{vertex}` of job `{job}` changes the state of snapshot {since}, but this member holds {}",
                            held.map_or("none".to_string(), |h| format!("snapshot {h}"))
                        );
                    }
                }
                None => ops.push(Op::ClearState {
                    owner: owner.clone(),
                }),
            }
            // This member's own log of the vertex's changes (from when it
            // ran here) no longer describes the state it holds.
            self.forget_changed(|key| key == owner);
            ops.push(Op::State { owner, changes });
        }
        // A queue cached here from when the vertex last ran here is stale.
        let cached: Vec<String> = backup
            .meta
            .iter()
            .filter(|(k, _)| k.starts_with(QUEUES))
            .map(|(k, _)| k.clone())
            .collect();
        for (key, value) in backup.meta {
            ops.push(match value {
                Some(value) => Op::PutMeta { key, value },
                None => Op::DeleteMeta { key },
            });
        }
        streams.commit_meta(ops)?.wait()?;
        lock(&self.inner.queues).retain(|k, _| !cached.contains(k));
        self.hold_resume(&record, &reads, &reader, &backup.inputs);
        tracing::debug!(
            job,
            vertex,
            snapshot = ?backup.id,
            inputs = ?backup.inputs,
            wrote = ?backup.wrote,
            "a backup stored a snapshot"
        );
        Ok(Stored::Resumes(backup.inputs, backup.id))
    }

    /// A backup of the vertex with snapshot key `key` (`asker`) holds a
    /// snapshot that resumes from `positions`: its inputs are kept from
    /// the lowest of its backups' positions.
    fn backed_up(&self, key: &str, asker: &Asker, positions: &[u64]) {
        let (inputs, lowest) = {
            let mut backed = lock(&self.inner.backed);
            let Some(b) = backed.get_mut(key) else {
                return;
            };
            b.hold(asker, positions);
            (b.inputs.clone(), b.lowest())
        };
        tracing::debug!(
            key,
            ?asker,
            ?positions,
            ?lowest,
            ?inputs,
            "a backup holds a snapshot: inputs held from the lowest"
        );
        for (stream, pos) in inputs.iter().zip(lowest.unwrap_or_default()) {
            self.reader_at(*stream, key, pos);
        }
    }

    /// Whether the inputs of the vertex with snapshot key `key` are kept
    /// from its backup's snapshot rather than its own latest.
    pub(super) fn is_backed(&self, key: &str) -> bool {
        lock(&self.inner.backed).contains_key(key) && !lock(&self.inner.replicas).contains(key)
    }

    /// Records which vertices of placed job `record` run here as replicas
    /// (`record.replicas`): a replica keeps its inputs from its own latest
    /// snapshot, as no backup stores its snapshots. A replica that became
    /// the vertex (its member was lost) keeps them from here on until its
    /// backup stores a snapshot of it.
    pub(super) fn set_replicas(&self, record: &JobRecord) -> Result<()> {
        let mut keys = Vec::new();
        for vertex in record.replicas.iter().flatten() {
            keys.extend(self.vertex_keys(record, vertex)?.0.pop());
        }
        let part = format!("/{}/", record.prefix());
        let mut replicas = lock(&self.inner.replicas);
        replicas.retain(|key| !key.contains(&part));
        replicas.extend(keys);
        Ok(())
    }

    /// Registers the readers of a placed job's vertices as it starts: each
    /// keeps what its input holds until its backup stores a snapshot; an
    /// empty copy of an input begins where its vertices read from.
    pub(super) fn hold_placed(&self, prefix: &str, tasks: &[(Task, VertexStatus)]) -> Result<()> {
        let written = written_by(tasks);
        let inputs = self.hold_vertices(tasks, &written, false)?;
        // The vertices of the job that no longer run here hold nothing.
        let part = format!("/{prefix}/");
        for list in lock(&self.inner.readers).values_mut() {
            list.retain(|reader, _| {
                !(reader.contains(&part)
                    && (reader.starts_with(SNAPSHOTS) || reader.starts_with(SINKS)))
                    || inputs.contains_key(reader)
            });
        }
        lock(&self.inner.backed).extend(inputs.into_iter().map(Backed::of));
        Ok(())
    }

    /// Registers the readers of `tasks` as they start beside vertices of
    /// their job already running here, which write `written` too.
    pub(super) fn hold_added(
        &self,
        tasks: &[(Task, VertexStatus)],
        mut written: BTreeSet<u64>,
    ) -> Result<()> {
        written.extend(written_by(tasks));
        let inputs = self.hold_vertices(tasks, &written, true)?;
        lock(&self.inner.backed).extend(inputs.into_iter().map(Backed::of));
        Ok(())
    }

    /// Forgets the holds of the vertices with reader keys `keys`, which
    /// stopped here (they run on another member now).
    pub(super) fn unhold_vertices(&self, keys: &BTreeSet<String>) {
        for list in lock(&self.inner.readers).values_mut() {
            list.retain(|reader, _| !keys.contains(reader));
        }
        lock(&self.inner.backed).retain(|key, _| !keys.contains(key));
        self.forget_changed(|key| keys.contains(key));
    }

    /// The input holds of `tasks`: a copy of an input (a stream not in
    /// `written`) that ends before its vertices read from goes on there
    /// (see [`Jobs::copy_from`]; `beside`: vertices already running here
    /// read it too), and each keeps what its input holds until its backup
    /// stores a snapshot. Returns each task's input streams by reader key.
    fn hold_vertices(
        &self,
        tasks: &[(Task, VertexStatus)],
        written: &BTreeSet<u64>,
        beside: bool,
    ) -> Result<HashMap<String, Vec<u64>>> {
        let streams = &self.inner.streams;
        let reads = super::build::task_reads(tasks);
        // Only copies: a stream written here is as its writer left it.
        let copies: BTreeSet<u64> = reads
            .iter()
            .map(|(s, ..)| *s)
            .filter(|s| !written.contains(s))
            .collect();
        for stream in copies.into_iter().filter(|s| !self.is_whole(*s)) {
            let from = reads
                .iter()
                .filter(|(s, ..)| *s == stream)
                .map(|(.., p)| *p)
                .min()
                .unwrap_or(0);
            self.copy_from(stream, from, beside)?;
        }
        let mut inputs: HashMap<String, Vec<u64>> = HashMap::new();
        for (stream, key, _) in &reads {
            inputs.entry(key.to_string()).or_default().push(*stream);
        }
        // A vertex that ran here before keeps its hold (never above what
        // its backed-up snapshot needs) until it is registered again.
        for (stream, key, _) in &reads {
            let low = streams.positions(*stream).map_or(0, |p| p.2);
            self.hold_from(*stream, key, low);
        }
        Ok(inputs)
    }

    /// Forgets the holds kept on `stream` for other members' copies
    /// (`pull/…`, `backup/…`, `writer/…`) from when a vertex here wrote
    /// it: another member writes it now, and they would keep this
    /// member's copy from being collected for as long as the job runs
    /// here. A backup's own hold on its copy stays.
    pub fn forget_copies_held(&self, stream: u64) {
        self.keep_copies(stream, &BTreeSet::from([BACKUP_HOLD.to_string()]));
    }

    /// Makes copy `stream` of a stream written on another member go on at
    /// `from`, where what reads it here begins, when it ends before: an
    /// empty copy, or one kept from before this member was declared lost
    /// (or its vertices moved away), whose writer has since collected
    /// what it lacks, so a pull from its end would be refused. What it
    /// holds is below anything read here. `readers`: the readers
    /// registered here count too (vertices running on beside the new ones,
    /// a backup's stored snapshot's readers).
    fn copy_from(&self, stream: u64, from: u64, readers: bool) -> Result<()> {
        let from = match self.held(stream) {
            Some(held) if readers => held.min(from),
            _ => from,
        };
        let streams = &self.inner.streams;
        match streams.positions(stream).map_or(0, |p| p.0) {
            0 => streams.begin_at(stream, from)?,
            next if next < from => {
                let name = streams.list().into_iter().find(|i| i.id == stream);
                let name = name.map_or_else(|| format!("#{stream}"), |i| i.name);
                tracing::info!(stream = %name, next, from, "a copy that ends before its readers begin goes on where they do");
                streams.skip_to(stream, from)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Forgets which vertices of job incarnation `prefix` keep their inputs
    /// for a backup (they stop here; their holds stay until the job starts
    /// here again, or is cancelled).
    pub(super) fn unhold_placed(&self, prefix: &str) {
        let part = format!("/{prefix}/");
        lock(&self.inner.backed).retain(|key, _| !key.contains(&part));
        lock(&self.inner.replicas).retain(|key| !key.contains(&part));
        lock(&self.inner.backed_reads).retain(|key, _| !key.contains(&part));
        self.forget_changed(|key| key.contains(&part));
        lock(&self.inner.sent).retain(|key, _| !key.starts_with(&format!("{prefix}/")));
    }

    /// Whether job stream `stream` (`NAME@ID.VERTEX…`) belongs to a job
    /// incarnation running here: until it runs, its vertices' holds are
    /// not registered, so nothing of it may be served (and collected).
    pub fn serves(&self, stream: &str) -> bool {
        job_stream(stream).is_some_and(|(name, id, _)| self.runs(name, id))
    }

    /// Keeps stream `id` from being collected by its readers here (a
    /// cluster's ingest stream: the coordinator sets how far every member
    /// collects it), and an empty copy of it from beginning where they read.
    pub fn keep_whole(&self, id: u64) {
        lock(&self.inner.whole).insert(id);
    }

    pub(super) fn is_whole(&self, id: u64) -> bool {
        lock(&self.inner.whole).contains(&id)
    }

    /// The lowest position a vertex here needs copy `stream` from, if any
    /// reads it: a copy acknowledges no more to its writer, so what a
    /// vertex resumed from its backup's snapshot reads is still there. A
    /// backup's own copy follows the writer's collection and holds nothing
    /// back, nor do holds kept for other members' copies when this member
    /// wrote the stream (its vertex moved away): neither is a reader here
    /// ([`BACKUP_HOLD`] is named like a backup's copy).
    pub fn held(&self, stream: u64) -> Option<u64> {
        lock(&self.inner.readers).get(&stream).and_then(|r| {
            r.iter()
                .filter(|(reader, _)| !super::placed::for_other_members(reader))
                .map(|(_, pos)| *pos)
                .min()
        })
    }
}

/// The streams `tasks` write.
fn written_by(tasks: &[(Task, VertexStatus)]) -> BTreeSet<u64> {
    tasks
        .iter()
        .filter_map(|(task, _)| match task {
            Task::Vertex { output, .. } | Task::File { output, .. } => Some(*output),
            Task::Sink { .. } => None,
        })
        .collect()
}

/// The job, incarnation and vertex of job stream `stream`
/// (`NAME@ID.VERTEX`, or its dead letters `….dead` or log `….logs`).
pub(super) fn job_stream(stream: &str) -> Option<(&str, u64, &str)> {
    let (prefix, rest) = stream.split_once('.')?;
    let (name, id) = prefix.rsplit_once('@')?;
    let vertex = rest.split('.').next().unwrap_or(rest);
    Some((name, id.parse().ok()?, vertex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker(member: u64, backing: &[u64]) -> Asker {
        Asker {
            member: Some(member),
            backing: backing.to_vec(),
            counted: true,
        }
    }

    #[test]
    fn inputs_are_kept_from_the_lowest_snapshot_any_backup_may_resume_from() {
        let (_, mut b) = Backed::of(("k".into(), vec![7, 8]));
        assert_eq!(b.lowest(), None, "no backup holds a snapshot yet");
        // The backup holds one; a new one (handed over, not ready) was
        // sent an older one, which it stores or replaces by a newer one.
        b.hold(&asker(2, &[3, 2]), &[100, 50]);
        b.hold(&asker(3, &[3, 2]), &[80, 60]);
        assert_eq!(b.lowest(), Some(vec![80, 50]));
        // The previous backup stores newer ones: the new one's still holds.
        b.hold(&asker(2, &[3, 2]), &[200, 90]);
        assert_eq!(b.lowest(), Some(vec![80, 60]));
        // A member that does not back the vertex up counts for nothing.
        b.hold(&asker(4, &[3, 2]), &[10, 10]);
        assert_eq!(b.lowest(), Some(vec![80, 60]));
        // The new one is the only backup now: the previous one's goes.
        b.hold(&asker(3, &[3]), &[150, 70]);
        assert_eq!(b.lowest(), Some(vec![150, 70]));
        // A member that does not say who it is counts alone.
        let anonymous = Asker {
            member: None,
            ..asker(0, &[])
        };
        b.hold(&anonymous, &[160, 75]);
        assert_eq!(b.lowest(), Some(vec![160, 75]));
    }
}
