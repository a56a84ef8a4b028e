//! Where a vertex backed up here would resume, and the holds that keep
//! this member's streams of its inputs from there: the snapshot stored
//! here (its own, from when it ran here, or a backup's), or the inputs'
//! start when none is.

use std::collections::BTreeSet;

use super::backup::Kind;
use super::*;

/// The prefix of the reader under which a backup keeps its own streams
/// of a backed-up vertex's inputs (a copy, or a stream a vertex here
/// writes) from where the snapshot it stored resumes: the vertex may move
/// here, or run here as a new replica, and read them from there.
const RESUME_HOLD: &str = "resume/";

/// The reader name under which this member keeps the inputs of `vertex`
/// of placed job `record` from where its snapshot stored here resumes.
pub(super) fn resume_reader(record: &JobRecord, vertex: &str) -> String {
    format!("{RESUME_HOLD}{}/{vertex}", record.prefix())
}

/// Where a vertex resumes from its snapshot.
pub(super) struct Resume {
    /// The next seq of its output and dead-letter streams (a sink writes
    /// none).
    pub(super) wrote: Option<(u64, u64)>,
    /// The positions in its inputs.
    pub(super) inputs: Vec<u64>,
    /// The snapshot's number (a stage's).
    pub(super) snapshot: Option<u64>,
}

/// Where the vertex of `kind` with snapshot `value` (stored under `key`;
/// `None`: none yet) resumes.
pub(super) fn resume_of(key: &str, kind: &Kind, value: Option<&[u8]>) -> Result<Resume> {
    let decode = |what: &str| err!(Job, "{key}: the {what} does not decode");
    let (wrote, inputs, snapshot) = match (kind, value) {
        (Kind::Sink, None) => (None, Vec::new(), None),
        (_, None) => (Some((0, 0)), Vec::new(), None),
        (Kind::Source, Some(v)) => {
            let at: FilePosition =
                postcard::from_bytes(v).map_err(|_| decode("source position"))?;
            (Some((at.output, at.dead)), Vec::new(), None)
        }
        (Kind::Stage, Some(v)) => {
            let at: VertexSnapshot = postcard::from_bytes(v).map_err(|_| decode("snapshot"))?;
            (Some((at.output, at.dead)), at.inputs, Some(at.id))
        }
        (Kind::Sink, Some(v)) => {
            let at: SinkPosition = postcard::from_bytes(v).map_err(|_| decode("sink position"))?;
            (None, vec![at.next], None)
        }
    };
    Ok(Resume {
        wrote,
        inputs,
        snapshot,
    })
}

impl Jobs {
    /// Holds this member's copies of inputs `reads` of a vertex of placed
    /// job `record` under `reader`, from `positions`, where the snapshot
    /// of it stored here resumes.
    pub(super) fn hold_resume(
        &self,
        record: &JobRecord,
        reads: &[String],
        reader: &str,
        positions: &[u64],
    ) {
        for (input, pos) in reads.iter().zip(positions) {
            if let Ok(info) = self.inner.streams.info(&record.stream(input)) {
                self.reader_at(info.id, reader, *pos);
            }
        }
    }

    /// Where the snapshot of `vertex` of placed job `record` stored here
    /// resumes (`None`: none is stored).
    fn stored_resume(&self, record: &JobRecord, vertex: &str) -> Result<Option<Resume>> {
        let (keys, kind) = self.vertex_keys(record, vertex)?;
        let key = keys.last().cloned().unwrap_or_default();
        let Some(value) = self.inner.streams.meta(&key)? else {
            return Ok(None);
        };
        resume_of(&key, &kind, Some(&value)).map(Some)
    }

    /// The input positions the snapshot of `vertex` of job `job`
    /// (incarnation `id`) stored here resumes from, its own or a
    /// backup's (`None`: none is stored): what a backup that has stored
    /// none in this run asks the vertex's member to keep first.
    pub fn stored_inputs(&self, job: &str, id: u64, vertex: &str) -> Result<Option<Vec<u64>>> {
        let record = self.placed_record(job, id)?;
        Ok(self.stored_resume(&record, vertex)?.map(|r| r.inputs))
    }

    /// Keeps this member's copies of the inputs of the vertices of placed
    /// job `record` it backs up (`backs`) from where each would resume
    /// here: the snapshot stored here, or the inputs' start when none is.
    /// Those in `left` stopped running here (each moved to its duplicate):
    /// they would resume from their own latest snapshot if their new
    /// member is lost before this member stores one from there. Others
    /// keep the hold a stored snapshot set.
    pub(super) fn hold_resumes(
        &self,
        record: &JobRecord,
        backs: &BTreeSet<String>,
        left: &BTreeSet<String>,
    ) -> Result<()> {
        for vertex in backs {
            let reader = resume_reader(record, vertex);
            let held = lock(&self.inner.readers)
                .values()
                .any(|list| list.contains_key(&reader));
            if held && !left.contains(vertex) {
                continue;
            }
            let reads = self.backed_reads(record, vertex, &reader)?;
            let inputs = match self.stored_resume(record, vertex)? {
                Some(at) => at.inputs,
                None => vec![0; reads.len()],
            };
            self.hold_resume(record, &reads, &reader, &inputs);
        }
        Ok(())
    }

    /// The inputs of vertex `vertex` of placed job `record`, whose stored
    /// snapshot's holds are kept under `reader`.
    pub(super) fn backed_reads(
        &self,
        record: &JobRecord,
        vertex: &str,
        reader: &str,
    ) -> Result<Vec<String>> {
        if let Some(reads) = lock(&self.inner.backed_reads).get(reader) {
            return Ok(reads.clone());
        }
        let plan = self.record_plan(record)?;
        let reads = placed::plan_vertices(&plan)
            .into_iter()
            .find(|v| v.name == vertex)
            .map(|v| v.reads)
            .unwrap_or_default();
        lock(&self.inner.backed_reads).insert(reader.to_string(), reads.clone());
        Ok(reads)
    }

    /// Forgets the holds this member keeps for the snapshots of placed job
    /// `record`'s vertices it stored as their backup, but for those of the
    /// vertices in `keep` (those it backs up and does not run, and those
    /// about to start here from those snapshots).
    pub(super) fn keep_resumes(&self, record: &JobRecord, keep: &BTreeSet<String>) {
        let prefix = format!("{RESUME_HOLD}{}/", record.prefix());
        let kept = |reader: &String| {
            reader
                .strip_prefix(&prefix)
                .is_none_or(|v| keep.contains(v))
        };
        lock(&self.inner.backed_reads).retain(|reader, _| kept(reader));
        for list in lock(&self.inner.readers).values_mut() {
            list.retain(|reader, _| kept(reader));
        }
    }
}
