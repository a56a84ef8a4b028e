//! Weir's cluster layer: membership and the coordinator.
//!
//! Every node is a member with an id assigned when it first joins. The
//! coordinator's metadata ([`metadata::Metadata`]: the members and their
//! health) is a replicated state machine on openraft, with its log and state
//! in redb ([`log`]), so losing any one of three members, the Raft leader
//! (the coordinator) included, loses none of it and a new leader takes over.
//! Members reach each other over QUIC with mutual TLS under the cluster's
//! CA ([`network`]); each sends the coordinator a heartbeat, and the
//! coordinator declares a member lost once it has been silent for the
//! heartbeat timeout ([`membership::Cluster`]).

use std::time::Duration;

mod collect;
pub mod jobs;
pub mod log;
pub mod membership;
pub mod metadata;
pub mod network;
mod replicas;
pub mod streams;

pub use membership::{Cluster, Settings, WeakCluster};
pub use metadata::NodeId;

openraft::declare_raft_types!(
    /// The coordinator's Raft types: metadata commands in, replies out.
    pub TypeConfig:
        D = metadata::Command,
        R = metadata::Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>
);

/// Why the cluster layer failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The coordinator's redb file cannot be used.
    #[error("the coordinator's state in {path} cannot be used: {detail}")]
    Storage {
        /// The file.
        path: String,
        /// What redb said.
        detail: String,
    },
    /// The node could not join.
    #[error(
        "cannot join the cluster at {seed}: {detail} (is a node of this cluster running there, and is node.pem signed by the cluster's CA?)"
    )]
    Join {
        /// The member asked.
        seed: String,
        /// What went wrong.
        detail: String,
    },
    /// The coordinator refused the request.
    #[error("{0}")]
    Refused(String),
    /// The Raft library refused or failed.
    #[error("the coordinator failed: {0}")]
    Raft(String),
    /// A member's message could not be read.
    #[error("a malformed cluster message: {0}")]
    Malformed(String),
    /// The heartbeat timeout is not usable.
    #[error("{0}")]
    Settings(String),
}

/// The Raft timings that follow from a heartbeat timeout: the leader
/// replicates six times per timeout, and a follower that has not heard from
/// it for half a timeout to a whole one stands for election (a follower
/// refuses to vote for a whole one after it last heard from the leader, the
/// leader's lease).
pub(crate) fn raft_config(lost_after: Duration) -> Result<openraft::Config, ClusterError> {
    let timeout = lost_after.as_millis().max(60) as u64;
    let config = openraft::Config {
        cluster_name: "weir".into(),
        heartbeat_interval: timeout / 6,
        election_timeout_min: timeout / 2,
        election_timeout_max: timeout,
        install_snapshot_timeout: (timeout * 4).max(2000),
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| ClusterError::Settings(format!("heartbeat timeout {timeout} ms: {e}")))
}
