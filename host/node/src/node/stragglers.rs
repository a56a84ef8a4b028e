//! Stragglers (StreamScope's production feature): the coordinator's member
//! compares each copy of a parallel stage with its peers by progress: the
//! latest CTI of its input it has read, as the members' heartbeats report
//! it. The copies of a stage read the same CTIs (an exchange sends each to
//! every partition), so this compares them in event time whatever their
//! share of the events, and whatever CTIs their operator writes (a hopping
//! aggregate writes one per window). A copy far behind its peers
//! for a few checks in a row gets a duplicate on its backup, from the
//! snapshot the backup holds ([`Command::Straggler`]); the duplicate's
//! member moves the vertex to it once it has caught up with its inputs
//! (`switch_caught_up`), unless the straggler catches up first, when its
//! duplicate goes. Either way the output is the same, entry for entry:
//! rStreams dedup by seq. A copy of a replicated stage instead moves to
//! the replica that would not be behind in its place, already running
//! ([`Command::Promote`]): nothing is replayed, and the readers elsewhere
//! read on from where they stood.

use std::collections::HashMap;
use std::time::Instant;

use weir_cluster::Cluster;
use weir_cluster::metadata::{Command, NodeId};

use super::*;

/// How often the coordinator's member compares the copies.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A copy is behind when its read CTI trails its peers' median by over
/// this many times the median's own lead over the furthest peer (a unit-
/// free measure: CTIs are in each job's own time)…
const FACTOR: i64 = 4;
/// … and it has over this many input entries to read (so that a copy a
/// moment late on a loaded machine is not one).
const MIN_LAG: u64 = 256;
/// Checks in a row a copy must be behind before it gets a duplicate.
const CHECKS: u32 = 3;
/// A straggler whose own lag is down to this has caught up.
const CAUGHT_UP: u64 = 8;

/// What the coordinator's member saw: per (job, vertex), the checks in a
/// row it was behind, and when it last checked.
#[derive(Debug, Default)]
pub(super) struct Behind {
    counts: HashMap<(String, String), u32>,
    checked: Option<Instant>,
}

/// Where a copy stands: the latest CTI of its input it has read (none
/// yet since it started), and the input entries it has not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    pub(super) cti: Option<i64>,
    pub(super) lag: u64,
}

/// The stage group of a parallel stage's vertex: `S__p` for a copy
/// `S__p{j}`, `S__in{i}p` for a partition `S__in{i}p{j}`; none for others.
fn group(vertex: &str) -> Option<&str> {
    let cut = vertex.trim_end_matches(|c: char| c.is_ascii_digit());
    (cut.len() < vertex.len() && cut.ends_with('p') && cut.contains("__")).then_some(cut)
}

/// The vertices of `copies` (each a stage's copy or partition) far behind
/// their peers (at least three that have read a CTI): a read CTI below
/// their median by over [`FACTOR`] times the distance from the median to
/// the furthest of them, with over [`MIN_LAG`] entries to read.
pub(super) fn behind(copies: &BTreeMap<String, Progress>) -> Vec<String> {
    let mut groups: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (v, p) in copies {
        if let (Some(g), Some(cti)) = (group(v), p.cti) {
            groups.entry(g).or_default().push(cti);
        }
    }
    for peers in groups.values_mut() {
        peers.sort_unstable();
    }
    copies
        .iter()
        .filter(|(v, p)| {
            let (Some(peers), Some(cti)) = (group(v).and_then(|g| groups.get(g)), p.cti) else {
                return false;
            };
            let (Some(median), Some(furthest)) = (peers.get(peers.len() / 2), peers.last()) else {
                return false;
            };
            let lead = furthest.saturating_sub(*median).max(1);
            peers.len() >= 3
                && p.lag > MIN_LAG
                && median.saturating_sub(cti) > FACTOR.saturating_mul(lead)
        })
        .map(|(v, _)| v.clone())
        .collect()
}

impl Node {
    /// As the coordinator's member, every [`CHECK_EVERY`]: gives the copies
    /// behind their peers for [`CHECKS`] checks a duplicate, and takes it
    /// from a straggler that caught up first.
    pub(super) async fn watch_stragglers(&self, cluster: &Cluster) {
        {
            let mut seen = lock(&self.behind);
            if seen.checked.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
                return;
            }
            seen.checked = Some(Instant::now());
        }
        let status = cluster.status();
        if status.coordinator != Some(cluster.id()) {
            return;
        }
        let metadata = cluster.metadata();
        let mut writes = Vec::new();
        for (name, job) in &metadata.jobs {
            // Each vertex's own progress, as its member reports it (not
            // its duplicate's), and its replicas' progress.
            let mut copies: BTreeMap<String, Progress> = BTreeMap::new();
            let mut replicas: BTreeMap<String, Vec<(NodeId, Progress)>> = BTreeMap::new();
            let mut finished = Vec::new();
            for m in &status.members {
                for v in m.vertices.iter().filter(|v| v.job == *name) {
                    let at = Progress {
                        cti: v.read_cti,
                        lag: v.lag,
                    };
                    let replica = job
                        .replicas
                        .get(&v.vertex)
                        .is_some_and(|r| r.contains(&m.id));
                    if replica && v.state == "running" {
                        replicas
                            .entry(v.vertex.clone())
                            .or_default()
                            .push((m.id, at));
                    }
                    if job.placement.get(&v.vertex) != Some(&m.id) {
                        continue;
                    }
                    if v.state == "finished" {
                        finished.push(&v.vertex);
                    }
                    if v.state == "running" {
                        copies.insert(v.vertex.clone(), at);
                    }
                }
            }
            let slow = behind(&copies);
            let mut seen = lock(&self.behind);
            seen.counts
                .retain(|(j, v), _| j != name || slow.contains(v));
            for v in &slow {
                let count = seen.counts.entry((name.clone(), v.clone())).or_insert(0);
                *count += 1;
                if *count < CHECKS || job.stragglers.contains(v) {
                    continue;
                }
                let at = copies[v];
                // A replicated vertex moves to a replica that keeps up.
                // Written only when it would move or get a duplicate: each
                // write is an entry of the Raft log, and a sink never gets
                // one.
                if job.replicated(v) {
                    let Some((member, ahead)) = ahead(&copies, v, &replicas) else {
                        continue;
                    };
                    // It must be behind for as long again before it moves on.
                    seen.counts.remove(&(name.clone(), v.clone()));
                    tracing::info!(job = %name, vertex = %v, read_cti = ?at.cti, lag = at.lag, replica_on = member, replica_read_cti = ?ahead.cti, replica_lag = ahead.lag, "a straggler: far behind its stage's peers, it moves to its replica, which keeps up");
                    writes.push(Command::Promote {
                        name: name.clone(),
                        id: job.id,
                        vertex: v.clone(),
                        member,
                    });
                } else if let Some(backup) = metadata.straggler_duplicate(name, v) {
                    tracing::info!(job = %name, vertex = %v, read_cti = ?at.cti, lag = at.lag, duplicate_on = backup, "a straggler: far behind its stage's peers, it gets a duplicate");
                    writes.push(straggler(name, job.id, v, true));
                }
            }
            for v in &job.stragglers {
                // A straggler that finished caught up too.
                if finished.contains(&v) || copies.get(v).is_some_and(|p| p.lag <= CAUGHT_UP) {
                    tracing::info!(job = %name, vertex = %v, "the straggler caught up first: its duplicate goes");
                    writes.push(straggler(name, job.id, v, false));
                }
            }
        }
        for command in writes {
            if let Err(e) = cluster.write(command).await {
                tracing::debug!("marking a straggler: {e:#}");
            }
        }
    }
}

fn straggler(name: &str, id: u64, vertex: &str, slow: bool) -> Command {
    Command::Straggler {
        name: name.to_string(),
        id,
        vertex: vertex.to_string(),
        slow,
    }
}

/// The replica of straggler `vertex` (among `replicas`, by member) that
/// would not be behind its peers in the vertex's place, the furthest in
/// event time if more than one.
fn ahead(
    copies: &BTreeMap<String, Progress>,
    vertex: &str,
    replicas: &BTreeMap<String, Vec<(NodeId, Progress)>>,
) -> Option<(NodeId, Progress)> {
    let own = copies.get(vertex)?.cti;
    replicas
        .get(vertex)?
        .iter()
        .filter(|(_, at)| at.cti > own)
        .filter(|(_, at)| {
            let mut instead = copies.clone();
            instead.insert(vertex.to_string(), *at);
            !behind(&instead).iter().any(|v| v == vertex)
        })
        .max_by_key(|(member, at)| (at.cti, std::cmp::Reverse(*member)))
        .copied()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_far_behind_its_peers_in_event_time_and_only_that_is_behind() {
        let at = |list: &[(&str, Option<i64>, u64)]| -> BTreeMap<String, Progress> {
            list.iter()
                .map(|(v, cti, lag)| {
                    (
                        v.to_string(),
                        Progress {
                            cti: *cti,
                            lag: *lag,
                        },
                    )
                })
                .collect()
        };
        let copies = at(&[
            ("S__p0", Some(50_000), 10),
            ("S__p1", Some(49_800), 12),
            ("S__p2", Some(30_000), 900),
            ("S__p3", Some(50_100), 8),
            // A copy that has not read a CTI since it started.
            ("S__p4", None, 5000),
            // A hot partition: many entries to read, but it keeps up.
            ("S__in0p0", Some(50_000), 2000),
            ("S__in0p1", Some(40_000), 200),
            ("S__in0p2", Some(50_000), 0),
            ("S__in0p3", Some(49_900), 0),
            ("Bid", Some(10), 5000),
            ("sink0", None, 5000),
        ]);
        // A partition 10 s behind with 200 entries to read is only a moment
        // late; a source or a sink has no peers.
        assert_eq!(behind(&copies), ["S__p2"]);
        // Everyone spread alike: no straggler.
        let even = at(&[
            ("S__p0", Some(100), 900),
            ("S__p1", Some(500), 1000),
            ("S__p2", Some(900), 950),
        ]);
        assert!(behind(&even).is_empty());
        // Two peers are too few to tell.
        let two = at(&[("S__p0", Some(50_000), 0), ("S__p1", Some(0), 900)]);
        assert!(behind(&two).is_empty());
    }

    #[test]
    fn a_straggler_moves_only_to_a_replica_that_keeps_up() {
        let at = |cti, lag| Progress {
            cti: Some(cti),
            lag,
        };
        let copies: BTreeMap<String, Progress> = [
            ("S__p0", at(50_000, 10)),
            ("S__p1", at(30_000, 900)),
            ("S__p2", at(49_800, 12)),
        ]
        .into_iter()
        .map(|(v, p)| (v.to_string(), p))
        .collect();
        assert_eq!(behind(&copies), ["S__p1"]);
        let replicas =
            |list: &[(NodeId, Progress)]| BTreeMap::from([("S__p1".to_string(), list.to_vec())]);
        // A replica as slow as the vertex, or slower, is no way out.
        let slow = replicas(&[(2, at(30_500, 880)), (3, at(20_000, 2000))]);
        assert_eq!(ahead(&copies, "S__p1", &slow), None);
        // Of those that keep up, the furthest.
        let fast = replicas(&[
            (2, at(49_000, 20)),
            (3, at(49_900, 5)),
            (4, at(30_000, 900)),
        ]);
        assert_eq!(ahead(&copies, "S__p1", &fast), Some((3, at(49_900, 5))));
        // A vertex no replica of which reported has none to move to.
        assert_eq!(ahead(&copies, "S__p1", &BTreeMap::new()), None);
    }
}
