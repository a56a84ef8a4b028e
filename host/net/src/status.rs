//! What a node reports about its jobs: the answers to `weir job status`,
//! deploys, rollbacks and history, as they travel in the protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_core::patch::Requested;

/// One vertex's state, as `weir job status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VertexStatus {
    /// Name (the sink's file for sinks).
    pub name: String,
    /// `source`, `stage` or `sink`.
    pub role: String,
    /// The vertex's name in the job's plan and placement where it differs
    /// from `name`: a sink's (`sink0`, `sink1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex: Option<String>,
    /// In a cluster: the member that runs it.
    #[serde(default)]
    pub member: Option<u64>,
    /// In a cluster: the member that backs it up (stores its snapshots and
    /// copies its output; it moves there when its member is lost).
    #[serde(default)]
    pub backed_up_on: Option<u64>,
    /// `starting`, `running`, `finished` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Per input: stream and next seq to read.
    pub inputs: Vec<(String, u64)>,
    /// Output stream and next seq to write.
    pub output: Option<(String, u64)>,
    /// Rows in.
    pub rows_in: u64,
    /// Rows out.
    pub rows_out: u64,
    /// Rows dead-lettered.
    pub dead: u64,
    /// Latest snapshot number.
    pub snapshot: u64,
    /// Module version (UDF stages).
    pub module: Option<String>,
    /// Patch timeline entries applied (UDF stages).
    #[serde(default)]
    pub patches: u64,
    /// A patch is scheduled for the next CTI.
    #[serde(default)]
    pub pending: bool,
    /// Where the latest patch applied took effect: (input position, CTIs
    /// written).
    #[serde(default)]
    pub switched_at: Option<(u64, u64)>,
    /// Why the last scheduled patch was not applied.
    #[serde(default)]
    pub refused: Option<String>,
    /// Where a UDF stage stopped when its UDF failed: (input position of the
    /// batch it failed on, CTIs written). A patch or filter recorded there
    /// resumes it.
    #[serde(default)]
    pub stuck_at: Option<(u64, u64)>,
    /// Runtime filters in effect (UDF stages).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Input rows runtime filters dropped (counted in `rows_in`).
    #[serde(default)]
    pub filtered: u64,
    /// Input entries written but not yet read, over all inputs.
    #[serde(default)]
    pub lag: u64,
    /// Input rows per second over the last second or so.
    #[serde(default)]
    pub rows_per_s: f64,
    /// UDF calls that trapped or returned an error since the job started
    /// on this node.
    #[serde(default)]
    pub traps: u64,
    /// Fuel the UDF's calls consumed since the job started on this node.
    #[serde(default)]
    pub fuel: u64,
    /// The UDF instance's linear memory, in bytes.
    #[serde(default)]
    pub memory: u64,
    /// Where `rows_per_s` was last measured from (the node's own).
    #[serde(skip)]
    pub rate_mark: Option<(std::time::Instant, u64)>,
    /// Requests accepted (durably queued), not yet handed to the vertex
    /// (the node's own; never sent).
    #[serde(skip)]
    pub requests: Vec<Requested>,
    /// CTIs the vertex has written (the node's own; never sent).
    #[serde(skip)]
    pub ctis: u64,
    /// The latest CTI of its input it has read since it started here.
    #[serde(default)]
    pub read_cti: Option<i64>,
    /// Set by the node: the vertex, a follower of a vertex on another
    /// member (a replica or duplicate), stops reading at its next entry
    /// because a change to its stage waits (never sent).
    #[serde(skip)]
    pub hold: bool,
    /// Where the vertex stopped for `hold`: the CTIs it had written
    /// (never sent).
    #[serde(skip)]
    pub held: Option<u64>,
    /// Set by the node: the timeline the vertex on another member recorded,
    /// which this follower takes before it reads on (never sent).
    #[serde(skip)]
    pub follow: Option<Vec<weir_core::patch::Patch>>,
    /// Set by the node, for a vertex of a placed job: how far the copies
    /// other members made of its output and dead letters hold them (the
    /// vertex takes no change below), or `None` while not every copy has
    /// said (the vertex takes none); taken by the vertex (never sent).
    #[serde(skip)]
    pub copies: Option<Option<(u64, u64)>>,
    /// The seq its output stream here had reached when the vertex started:
    /// below it, the vertex writes again what the stream holds (never
    /// sent).
    #[serde(skip)]
    pub rewrites_below: u64,
    /// Which run of the vertex this is, unique in the process: one
    /// started again is another (never sent).
    #[serde(skip)]
    pub run: u64,
    /// A followed file's source was asked to end at the file's end.
    #[serde(default)]
    pub ending: bool,
    /// In a cluster: the snapshot its backup was sent last.
    #[serde(default)]
    pub backup: Option<BackupSent>,
    /// What became of the latest requests the vertex settled: taken into
    /// the timeline (`None`) or refused (why), by request id.
    #[serde(skip)]
    pub outcomes: BTreeMap<u64, Option<String>>,
}

impl VertexStatus {
    /// The vertex's name in the job's plan and placement.
    pub fn vertex(&self) -> &str {
        self.vertex.as_deref().unwrap_or(&self.name)
    }
}

/// The snapshot a vertex's member sent the vertex's backup last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupSent {
    /// The snapshot's number.
    pub snapshot: u64,
    /// The keyed-state entries it carried.
    pub keys: u64,
    /// Whether they are the whole state; otherwise only the keys changed
    /// since the snapshot the backup held (`since`).
    pub whole: bool,
    /// The snapshot the backup held, which the changes apply to.
    pub since: Option<u64>,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A job's state, as `weir job status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    /// Name.
    pub name: String,
    /// Incarnation.
    pub id: u64,
    /// `running`, `finished` or `failed`.
    pub state: String,
    /// Its vertices: sources, stages, sinks.
    pub vertices: Vec<VertexStatus>,
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchReport {
    /// The job.
    pub job: String,
    /// The stage.
    pub stage: String,
    /// The version it ran (short).
    pub from: String,
    /// The version it runs now (full SHA-256 hex).
    pub to: String,
    /// What changed (`deploy`, `rollback`, `filter added: ...`).
    pub change: String,
    /// Where it took effect: (input position, CTIs written); `None` when the
    /// stage had no CTI within the wait, so the switch is still scheduled.
    pub applied: Option<(u64, u64)>,
    /// Microseconds from handing the switch to the stage to its timeline
    /// entry being durable (waiting for the next CTI included).
    pub switch_us: u64,
    /// The shadow run, if one was asked for.
    pub shadow: Option<ShadowReport>,
    /// For a stage that runs as several rVertices: each copy's report (the
    /// change went to every copy; each switches at a CTI of its own input).
    #[serde(default)]
    pub copies: Vec<PatchReport>,
    /// The copy had finished (its input ended) before it could take the
    /// change: it never applies there.
    #[serde(default)]
    pub finished: bool,
}

/// The new version beside the running one on recent input rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowReport {
    /// Input rows asked for.
    pub asked: u64,
    /// Input rows both versions ran on (at most those the input stream
    /// still holds).
    pub rows: u64,
    /// Output rows of the running version.
    pub old_rows: u64,
    /// Output rows of the new version.
    pub new_rows: u64,
    /// Output rows that differ (by position, plus the difference in count).
    pub differ: u64,
}

/// What `weir udf replay` found: a candidate version run next to the
/// running one over input the stage really saw, from the stage's state at
/// the first position.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayReport {
    /// The job.
    pub job: String,
    /// The stage.
    pub stage: String,
    /// The version that ran there (full SHA-256 hex), as of `from`.
    pub running: String,
    /// The candidate (full SHA-256 hex).
    pub candidate: String,
    /// The input seqs replayed: `from..to`.
    pub from: u64,
    /// One past the last input seq replayed.
    pub to: u64,
    /// The input seq of the stage's latest checkpoint: the earliest `from`
    /// whose state is kept.
    pub checkpoint: u64,
    /// Per input (a stage may merge several): its name, the seq of the
    /// stage's latest checkpoint, and the seqs replayed (`from..to`).
    /// `from`, `to` and `checkpoint` above are the first input's.
    #[serde(default)]
    pub inputs: Vec<(String, u64, u64, u64)>,
    /// Input rows replayed.
    pub rows: u64,
    /// CTIs replayed (each may fire timers).
    pub ctis: u64,
    /// Output rows of the running version.
    pub running_rows: u64,
    /// Output rows of the candidate.
    pub candidate_rows: u64,
    /// Rows dead-lettered by the running version and by the candidate.
    pub dead: (u64, u64),
    /// Output rows that differ (by position, plus the difference in count).
    pub differ: u64,
    /// The first rows that differ: output row index, the running version's
    /// row and the candidate's (JSON with interval; `None` past its end).
    pub samples: Vec<(u64, Option<String>, Option<String>)>,
}

/// One version in a stage's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The copy it applies to, for a stage that runs as several rVertices
    /// (`Totals__p1`); empty for a stage that runs as one.
    #[serde(default)]
    pub copy: String,
    /// Module version (SHA-256 hex).
    pub version: String,
    /// Input position where it took effect.
    pub position: u64,
    /// CTIs the vertex had written then.
    pub ctis: u64,
    /// Why.
    pub why: String,
    /// When (Unix milliseconds; 0 for the job's own version).
    pub at_ms: u64,
    /// It is the version in use.
    pub current: bool,
}
