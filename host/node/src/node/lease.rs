//! The vertices here write only while this member holds its lease in the
//! cluster ([`Cluster::lease_until`]) and has acted on every loss of it the
//! metadata records: a member that may have been declared lost stops
//! writing before the others resume its vertices elsewhere, instead of
//! writing on, until it hears of its loss, a run the cluster left (rows
//! past a patch made elsewhere, snapshots a backup could take, a sink's
//! file cut back under it).

use super::*;

/// How often the lease is looked at: a small share of any timeout.
const LEASE_CHECK: Duration = Duration::from_millis(20);

/// A sink writes its file only while a tenth of the heartbeat timeout is
/// left of the lease ([`Jobs::lease_until`]). Leases are renewed every
/// quarter of the timeout: a member's runs nine tenths of it past each
/// heartbeat, the coordinator's nine tenths of half of it past each
/// confirmation, so at least a fifth of the timeout is left while they
/// come on time, and this stops a sink only once they are late.
const FILE_MARGIN_SHARE: u32 = 10;

impl Node {
    /// Stops the vertices' writes while this member holds no lease, and
    /// lets them go on once it does again.
    pub(super) async fn keep_lease(self, cluster: Cluster) {
        let mut tick = tokio::time::interval(LEASE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since: Option<std::time::Instant> = None;
        // Read from the database again only when the metadata records a
        // loss past it (acting on one raises it).
        let mut acted = self.losses_acted();
        let file_margin = cluster.heartbeat_timeout() / FILE_MARGIN_SHARE;
        loop {
            tick.tick().await;
            let losses = cluster.losses_of(cluster.id());
            if losses > acted {
                acted = self.losses_acted();
            }
            let until = cluster.lease_until().filter(|_| losses <= acted);
            self.jobs
                .lease_until(until.map(|u| u.into_std()), file_margin);
            let held = until.is_some();
            match (held, since) {
                (false, None) => {
                    since = Some(std::time::Instant::now());
                    tracing::debug!(
                        "this member holds no lease in the cluster: its vertices write nothing until the coordinator answers"
                    );
                }
                (true, Some(at)) => {
                    since = None;
                    tracing::debug!(
                        waited_ms = at.elapsed().as_millis() as u64,
                        "this member holds its lease again: its vertices write on"
                    );
                }
                _ => {}
            }
        }
    }
}
