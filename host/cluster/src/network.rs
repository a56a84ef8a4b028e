//! Members talking to members: one QUIC connection with mutual TLS per peer
//! (the node's own certificate, role `node`), reused for every request and
//! dropped on failure, so the next request reconnects; and the coordinator's
//! Raft messages over it.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory, Snapshot, Vote};
use serde::{Deserialize, Serialize};
use weir_net::NetError;
use weir_net::cluster::{ClusterRequest, ClusterResponse, RaftRpc};
use weir_net::protocol::{CertDir, Client, Request, Response};

use crate::TypeConfig;
use crate::metadata::NodeId;

/// How a member reaches the others: [`Peers`] over QUIC, or a simulated
/// network in tests.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` to the member at `addr` and returns its answer,
    /// within `timeout`.
    fn call<'a>(
        &'a self,
        addr: &'a str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<ClusterResponse, NetError>> + Send + 'a>>;
}

/// A shared transport.
pub type Link = Arc<dyn Transport>;

impl Transport for Peers {
    fn call<'a>(
        &'a self,
        addr: &'a str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<ClusterResponse, NetError>> + Send + 'a>> {
        Box::pin(Peers::call(self, addr, request, timeout))
    }
}

/// Connections to other members.
#[derive(Debug, Clone)]
pub struct Peers {
    certs: CertDir,
    connections: Arc<tokio::sync::Mutex<HashMap<String, Arc<Client>>>>,
}

impl Peers {
    /// Peers reached with the node certificate in `certs`.
    pub fn new(certs: &Path) -> Peers {
        Peers {
            certs: CertDir::with_identity(certs, Some("node".into())),
            connections: Arc::default(),
        }
    }

    /// Sends `request` to the member at `addr` and returns its answer, within `timeout`.
    pub async fn call(
        &self,
        addr: &str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> Result<ClusterResponse, NetError> {
        let answer = tokio::time::timeout(timeout, self.call_once(addr, request))
            .await
            .unwrap_or_else(|_| {
                Err(NetError::Transport(format!(
                    "the member at {addr} did not answer within {} ms",
                    timeout.as_millis()
                )))
            });
        if matches!(answer, Err(NetError::Transport(_))) {
            // The connection may be dead: the next call makes a new one.
            self.connections.lock().await.remove(addr);
        }
        answer
    }

    async fn call_once(
        &self,
        addr: &str,
        request: ClusterRequest,
    ) -> Result<ClusterResponse, NetError> {
        let client = self.client(addr).await?;
        match client.call(&Request::Cluster(request), None).await? {
            Response::Cluster(answer) => Ok(answer),
            other => Err(NetError::Invalid(format!(
                "the member at {addr} answered a cluster request with {other:?}"
            ))),
        }
    }

    async fn client(&self, addr: &str) -> Result<Arc<Client>, NetError> {
        if let Some(client) = self.connections.lock().await.get(addr) {
            return Ok(client.clone());
        }
        let socket = addr
            .parse()
            .map_err(|e| NetError::Invalid(format!("member address `{addr}`: {e}")))?;
        let client = Arc::new(Client::connect(socket, &self.certs).await?);
        self.connections
            .lock()
            .await
            .insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

/// Makes a [`Peer`] per member for the Raft library.
#[derive(Clone)]
pub struct Network {
    /// The connections.
    pub peers: Link,
    /// The heartbeat timeout the Raft timings follow from.
    pub lost_after: Duration,
}

/// How long the leader waits before trying a member again after a message
/// to it was lost: one heartbeat interval, doubling while the failures go
/// on, but never more than a third of the heartbeat timeout. (openraft's
/// default, a constant 500 ms, outlasts a follower's patience of one
/// timeout plus its election timeout; a single lost message would make the
/// follower stand for election against a healthy leader.)
pub fn retry_intervals(lost_after: Duration) -> impl Iterator<Item = Duration> {
    let first = lost_after / 6;
    let most = lost_after / 3;
    std::iter::successors(Some(first), move |d| Some((*d * 2).min(most)))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            lost_after: self.lost_after,
        }
    }
}

/// The Raft library's view of one other member.
pub struct Peer {
    target: NodeId,
    addr: String,
    peers: Link,
    lost_after: Duration,
}

/// A snapshot as it travels.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotMessage {
    /// The sender's vote.
    pub vote: Vote<NodeId>,
    /// What the snapshot covers.
    pub meta: openraft::SnapshotMeta<NodeId, BasicNode>,
    /// The state machine's bytes.
    pub data: Vec<u8>,
}

/// Why a message to a peer failed before its answer came back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

impl Peer {
    /// Sends one Raft message; the answer is the receiver's `Result`.
    async fn rpc<Q: Serialize, A: for<'de> Deserialize<'de>>(
        &self,
        rpc: RaftRpc,
        message: &Q,
        ttl: Duration,
    ) -> Result<A, Unreachable> {
        let payload =
            serde_json::to_value(message).map_err(|e| Unreachable::new(&Failed(e.to_string())))?;
        let request = ClusterRequest::Raft {
            target: self.target,
            rpc,
            payload,
        };
        match self.peers.call(&self.addr, request, ttl).await {
            Ok(ClusterResponse::Raft(value)) => serde_json::from_value(value).map_err(|e| {
                Unreachable::new(&Failed(format!(
                    "member {} at {} answered a {rpc:?} with what is not one: {e}",
                    self.target, self.addr
                )))
            }),
            Ok(other) => Err(Unreachable::new(&Failed(format!(
                "member {} at {} answered a {rpc:?} with {other:?}",
                self.target, self.addr
            )))),
            Err(e) => Err(Unreachable::new(&e)),
        }
    }
}

type RpcResult<T> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId>>>;

impl RaftNetwork<TypeConfig> for Peer {
    fn backoff(&self) -> Backoff {
        Backoff::new(retry_intervals(self.lost_after))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = self
            .rpc(RaftRpc::AppendEntries, &rpc, option.hard_ttl())
            .await?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            self.rpc(RaftRpc::Vote, &rpc, option.hard_ttl()).await?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let message = SnapshotMessage {
            vote,
            meta: snapshot.meta,
            data: *snapshot.snapshot,
        };
        let answer: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> = self
            .rpc(RaftRpc::Snapshot, &message, option.hard_ttl())
            .await
            .map_err(StreamingError::Unreachable)?;
        answer.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After any run of lost messages, the leader tries a follower again
    /// before the follower's patience runs out (the leader's lease plus the
    /// shortest election timeout), so one lost heartbeat does not start an
    /// election against a healthy leader.
    #[test]
    fn retries_come_before_a_follower_stands_for_election() {
        for ms in [60, 300, 1000, 5000] {
            let lost_after = Duration::from_millis(ms);
            let config = crate::raft_config(lost_after).expect("a usable timeout");
            let patience =
                Duration::from_millis(config.election_timeout_max + config.election_timeout_min);
            let heartbeat = Duration::from_millis(config.heartbeat_interval);
            for (i, wait) in retry_intervals(lost_after).take(20).enumerate() {
                assert!(
                    wait + heartbeat * 2 < patience,
                    "{ms} ms: retry {i} after {wait:?}, a follower waits {patience:?}"
                );
                assert!(wait >= heartbeat, "{ms} ms: retry {i} after only {wait:?}");
            }
        }
    }
}
