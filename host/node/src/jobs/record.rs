//! A job as a node stores it, and as a member of a cluster runs its part.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A job as the node stores it: the job file's text and where it was, with the
/// module version of each component it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job name.
    pub name: String,
    /// Incarnation: a job submitted again after a cancel gets a new id and new streams.
    pub id: u64,
    /// The job file's path (anchors relative paths).
    pub path: PathBuf,
    /// The job file's text.
    pub text: String,
    /// Component path (as resolved from the job file) → module version.
    pub modules: std::collections::BTreeMap<PathBuf, String>,
    /// The default rVertices of a script's keyed stages (`--parallelism`).
    #[serde(default = "one")]
    pub parallelism: usize,
    /// In a cluster: the vertices this node runs (the coordinator placed
    /// the others elsewhere). `None`: all of them.
    #[serde(default)]
    pub only: Option<std::collections::BTreeSet<String>>,
    /// In a cluster: the vertices this node backs up (copies of their
    /// output streams and their latest snapshots).
    #[serde(default)]
    pub backs: Option<std::collections::BTreeSet<String>>,
    /// In a cluster: the vertices of `only` that run here as replicas of a
    /// vertex placed on another member (`replicate = k`): their inputs
    /// are kept from their own snapshots, as no backup holds theirs.
    #[serde(default)]
    pub replicas: Option<std::collections::BTreeSet<String>>,
    /// In a cluster: the vertices of `only` that follow a vertex placed on
    /// another member (its replicas and duplicates): they make the switches
    /// it records rather than changes of their own.
    #[serde(default)]
    pub follows: Option<std::collections::BTreeSet<String>>,
    /// In a cluster: the sinks of `only` that write their file beside
    /// another instance (a drain's duplicate, or the vertex it duplicates).
    /// Both write the same bytes at the same offsets, so neither cuts the
    /// file back to its own synced length when it opens it.
    #[serde(default)]
    pub shared: Option<std::collections::BTreeSet<String>>,
    /// In a cluster: ingest stream → where the job's sources of it start
    /// (the stream's collection point when the job was submitted; absent:
    /// what the stream holds here).
    #[serde(default)]
    pub starts: std::collections::BTreeMap<String, u64>,
}

fn one() -> usize {
    1
}

impl JobRecord {
    /// The prefix of the job's stream names.
    pub fn prefix(&self) -> String {
        format!("{}@{}", self.name, self.id)
    }

    /// The full name of the job's stream `name` (a source's or stage's output).
    pub fn stream(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix())
    }
}
