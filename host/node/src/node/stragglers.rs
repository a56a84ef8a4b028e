//! Stragglers (StreamScope's production feature): the coordinator's member
//! compares each copy of a parallel stage with its peers, by the input
//! entries it has not read yet (its lag, as the members' heartbeats report
//! it). A copy far behind its peers for a few checks in a row gets a
//! duplicate on its backup, from the snapshot the backup holds
//! ([`Command::Straggler`]); the duplicate's member moves the vertex to it
//! once it has caught up with its inputs (`switch_caught_up`), unless the
//! straggler catches up first, when its duplicate goes. Either way the
//! output is the same, entry for entry: rStreams dedup by seq.

use std::collections::HashMap;
use std::time::Instant;

use weir_cluster::Cluster;
use weir_cluster::metadata::Command;

use super::*;

/// How often the coordinator's member compares the copies.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A copy is behind when its lag is over this many times its peers' median…
const FACTOR: u64 = 4;
/// … and over this many input entries (a paced Nexmark source writes 100
/// a second).
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

/// The stage group of a parallel stage's vertex: `S__p` for a copy
/// `S__p{j}`, `S__in{i}p` for a partition `S__in{i}p{j}`; none for others.
fn group(vertex: &str) -> Option<&str> {
    let cut = vertex.trim_end_matches(|c: char| c.is_ascii_digit());
    (cut.len() < vertex.len() && cut.ends_with('p') && cut.contains("__")).then_some(cut)
}

/// The vertices of `lags` (vertex → lag, each a stage's copy or partition)
/// far behind their peers: over [`MIN_LAG`] and over [`FACTOR`] times the
/// median of their group (at least three peers).
pub(super) fn behind(lags: &BTreeMap<String, u64>) -> Vec<String> {
    let mut groups: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (v, lag) in lags {
        if let Some(g) = group(v) {
            groups.entry(g).or_default().push(*lag);
        }
    }
    lags.iter()
        .filter(|(v, lag)| {
            let Some(peers) = group(v).and_then(|g| groups.get(g)) else {
                return false;
            };
            if peers.len() < 3 {
                return false;
            }
            let mut sorted = peers.clone();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2];
            **lag > MIN_LAG && **lag > FACTOR * median.max(1)
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
            // Each vertex's own lag, as its member reports it (not its
            // duplicate's or a replica's).
            let mut lags: BTreeMap<String, u64> = BTreeMap::new();
            for m in &status.members {
                for v in m.vertices.iter().filter(|v| v.job == *name) {
                    if job.placement.get(&v.vertex) == Some(&m.id) && v.state == "running" {
                        lags.insert(v.vertex.clone(), v.lag);
                    }
                }
            }
            let slow = behind(&lags);
            let mut seen = lock(&self.behind);
            seen.counts
                .retain(|(j, v), _| j != name || slow.contains(v));
            for v in &slow {
                let count = seen.counts.entry((name.clone(), v.clone())).or_insert(0);
                *count += 1;
                if *count >= CHECKS && !job.stragglers.contains(v) {
                    tracing::info!(job = %name, vertex = %v, lag = lags[v], "a straggler: far behind its stage's peers, it gets a duplicate");
                    writes.push((name.clone(), job.id, v.clone(), true));
                }
            }
            for v in &job.stragglers {
                if lags.get(v).is_some_and(|lag| *lag <= CAUGHT_UP) {
                    tracing::info!(job = %name, vertex = %v, "the straggler caught up first: its duplicate goes");
                    writes.push((name.clone(), job.id, v.clone(), false));
                }
            }
        }
        for (name, id, vertex, slow) in writes {
            let command = Command::Straggler {
                name,
                id,
                vertex,
                slow,
            };
            if let Err(e) = cluster.write(command).await {
                tracing::debug!("marking a straggler: {e:#}");
            }
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_far_behind_its_peers_and_only_that_is_behind() {
        let lags = |list: &[(&str, u64)]| -> BTreeMap<String, u64> {
            list.iter().map(|(v, l)| (v.to_string(), *l)).collect()
        };
        let copies = lags(&[
            ("S__p0", 10),
            ("S__p1", 12),
            ("S__p2", 900),
            ("S__p3", 8),
            ("S__in0p0", 0),
            ("S__in0p1", 200),
            ("S__in0p2", 0),
            ("Bid", 5000),
            ("sink0", 5000),
        ]);
        // A partition at 200 is behind a median of 0, but under MIN_LAG;
        // a source or a sink has no peers.
        assert_eq!(behind(&copies), ["S__p2"]);
        // Everyone behind alike: no straggler.
        let even = lags(&[("S__p0", 900), ("S__p1", 1000), ("S__p2", 950)]);
        assert!(behind(&even).is_empty());
        // Two peers are too few to tell.
        assert!(behind(&lags(&[("S__p0", 0), ("S__p1", 900)])).is_empty());
    }
}
