//! What nodes say to each other about the cluster, and what `weir cluster
//! status` gets back: joins, heartbeats, the coordinator's Raft messages
//! (their payloads are the Raft library's own messages as JSON, decoded by
//! the receiver against its types) and the cluster's state.

use serde::{Deserialize, Serialize};

/// A cluster request (inside [`crate::protocol::Request::Cluster`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRequest {
    /// A node asks to be a member: a new one (`id` none) gets an id; a known
    /// one (after a restart) announces its address.
    Join {
        /// The address the node listens on.
        addr: String,
        /// Its id, when it has one.
        id: Option<u64>,
        /// A number a new node draws once per start: a join sent again
        /// (its answer was lost) gets the id the first one got.
        #[serde(default)]
        nonce: u64,
    },
    /// A member is alive (sent to the coordinator every heartbeat interval).
    Heartbeat {
        /// The member.
        id: u64,
        /// The address it listens on now.
        addr: String,
        /// The vertices it runs.
        #[serde(default)]
        vertices: Vec<VertexLoad>,
        /// How far its readers need the cluster's ingest streams kept.
        #[serde(default)]
        needs: Option<StreamNeeds>,
    },
    /// A coordinator (Raft) message for member `target`.
    Raft {
        /// The member the message is for: a node refuses one for another id
        /// (a new node may listen where a lost one did).
        target: u64,
        /// Which message.
        rpc: RaftRpc,
        /// The message, as the Raft library serializes it.
        payload: serde_json::Value,
    },
    /// The cluster's members, their health and the coordinator.
    Status,
    /// Drain a member for maintenance (`weir node drain`): its vertices
    /// move to the members that back them up, and nothing new goes to it
    /// until it starts again.
    Drain {
        /// The member: its id, or the address it listens on.
        member: String,
    },
    /// A change to the coordinator's metadata a member asks for (a job
    /// submitted or cancelled), as the coordinator's library encodes it.
    Propose(serde_json::Value),
    /// A request a member passes on to the coordinator; it is not passed on
    /// again, so members that disagree on who leads never bounce it. A
    /// forwarded `Status` asks the receiving member for its own view.
    Forwarded(Box<ClusterRequest>),
}

/// The coordinator's messages between members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftRpc {
    /// Log replication and the leader's heartbeat.
    AppendEntries,
    /// A candidate asks for votes.
    Vote,
    /// A whole state-machine snapshot for a member that is far behind.
    Snapshot,
}

/// The answer to a [`ClusterRequest`] (inside
/// [`crate::protocol::Response::Cluster`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterResponse {
    /// A join: the member's id.
    Joined {
        /// The id, new or confirmed.
        id: u64,
    },
    /// A heartbeat was taken, by a coordinator that had applied the
    /// metadata up to entry `applied`.
    Alive {
        /// The last entry of the metadata's log it applied.
        applied: Option<u64>,
    },
    /// The Raft library's answer, as it serializes it.
    Raft(serde_json::Value),
    /// The cluster's state.
    Status(ClusterStatus),
    /// What writing a proposed change did, as the coordinator encodes it.
    Applied(serde_json::Value),
    /// A member is being drained.
    Draining {
        /// Its id.
        id: u64,
    },
    /// This node is not the coordinator and knows of none to forward to
    /// (an election is under way): retry shortly.
    NoCoordinator,
}

/// The cluster as `weir cluster status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The member running the coordinator (the Raft leader), if one is elected.
    pub coordinator: Option<u64>,
    /// The coordinator's Raft term.
    pub term: u64,
    /// The member that answered.
    pub answered_by: u64,
    /// Every member, by id.
    pub members: Vec<MemberStatus>,
    /// The ingest streams, by name, and the members that hold them.
    #[serde(default)]
    pub streams: Vec<StreamHolders>,
}

/// The members holding one ingest stream of the cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamHolders {
    /// The stream.
    pub name: String,
    /// Its holders, the primary (which takes its ingests) first.
    pub holders: Vec<u64>,
    /// The holders that hold every entry the primary acknowledged.
    pub ready: Vec<u64>,
    /// Its collection point: every member's copy begins there.
    #[serde(default)]
    pub low: u64,
}

/// One member of the cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its id (assigned at its join, never reused).
    pub id: u64,
    /// The address it listens on.
    pub addr: String,
    /// `up`, `lost` (silent longer than the heartbeat timeout) or `replaced`
    /// (a new member joined at its address: its disk is gone).
    pub health: String,
    /// Whether it votes in the coordinator's elections.
    pub voter: bool,
    /// Whether it is drained (`weir node drain`) and takes no new work.
    #[serde(default)]
    pub draining: bool,
    /// How many vertices the coordinator places on it.
    #[serde(default)]
    pub placed: usize,
    /// How many vertices it backs up.
    #[serde(default)]
    pub backs: usize,
    /// Milliseconds since the coordinator last heard from it.
    pub heard_ms: Option<u64>,
    /// The vertices it runs, as of its last heartbeat.
    #[serde(default)]
    pub vertices: Vec<VertexLoad>,
}

/// How far a member's readers need the cluster's ingest streams kept: a
/// source's input held from its backed-up snapshot, a backup's from the
/// snapshot it stored. The coordinator collects a stream below what every
/// member needs, once all have acted on the same placement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamNeeds {
    /// The epoch of the coordinator's metadata the member has acted on:
    /// every vertex placed on it then runs and holds its inputs.
    pub epoch: u64,
    /// Stream → the lowest seq a reader on the member needs (a stream no
    /// reader here reads is absent).
    pub streams: std::collections::BTreeMap<String, u64>,
}

/// One vertex a member runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertexLoad {
    /// Its job.
    pub job: String,
    /// The vertex.
    pub vertex: String,
    /// `starting`, `running`, `finished` or `failed`.
    pub state: String,
    /// Input entries written but not yet read.
    pub lag: u64,
    /// Whether it is a replica of a vertex placed on another member
    /// (`replicate = k`), as the answering member's metadata says.
    #[serde(default)]
    pub replica: bool,
    /// The latest CTI of its input it has read: its progress in event
    /// time. The copies of a parallel stage read the same CTIs, so a copy
    /// whose CTI trails its peers' is behind whatever its share of events.
    #[serde(default)]
    pub read_cti: Option<i64>,
    /// Its name in the job's plan and placement where it differs from
    /// `vertex`: a sink's (`sink0`, ...), where `vertex` is its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The member that backs it up, as the answering member's metadata
    /// says (none for a replica or a duplicate).
    #[serde(default)]
    pub backup: Option<u64>,
    /// Whether it would resume at once if its member were lost now: a
    /// replica runs elsewhere, or a backup holds a snapshot of it. Until
    /// then (a new backup storing its first snapshot after a loss or a
    /// drain, or no other member to back it up), the loss of its member
    /// leaves it waiting for that member. None for a replica or a
    /// duplicate (the vertex is listed on its own member).
    #[serde(default)]
    pub protected: Option<bool>,
}

impl VertexLoad {
    /// Its name in the job's plan and placement.
    pub fn planned(&self) -> &str {
        self.plan.as_deref().unwrap_or(&self.vertex)
    }
}
