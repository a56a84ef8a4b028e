//! `weir node drain`, as the coordinator answers it.

use weir_net::cluster::ClusterResponse;

use super::Cluster;
use crate::ClusterError;
use crate::metadata::{Command, Health, NodeId, Reply};

impl Cluster {
    /// Drains `member` (its id, or the address it listens on): writes
    /// [`Command::Drain`] and answers with its id, or why not.
    pub(super) async fn drain(&self, member: &str) -> Result<ClusterResponse, ClusterError> {
        let metadata = self.applied().metadata;
        let id = member
            .parse::<NodeId>()
            .ok()
            .filter(|id| metadata.members.contains_key(id))
            .or_else(|| {
                metadata
                    .members
                    .iter()
                    .find(|(_, m)| m.addr == member && m.health != Health::Replaced)
                    .map(|(id, _)| *id)
            })
            .ok_or_else(|| {
                let known: Vec<String> = metadata
                    .members
                    .iter()
                    .map(|(id, m)| format!("{id} at {}", m.addr))
                    .collect();
                ClusterError::Refused(format!(
                    "no member `{member}` in the cluster (members: {})",
                    known.join(", ")
                ))
            })?;
        match self.propose(Command::Drain { id }).await {
            Ok(Reply::Refused(why)) => Err(ClusterError::Refused(why)),
            Ok(_) => Ok(ClusterResponse::Draining { id }),
            Err(e) => {
                tracing::debug!("a drain could not be written: {e}");
                Ok(ClusterResponse::NoCoordinator)
            }
        }
    }
}
