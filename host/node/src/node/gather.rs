//! `weir job status` of a job placed over the cluster: every member's
//! report of its own vertices, gathered into one list where each vertex
//! appears where the placement runs it.

use std::collections::{BTreeMap, BTreeSet};

use weir_cluster::jobs::ClusterJob;
use weir_cluster::metadata::{Metadata, NodeId};

use crate::jobs::{JobStatus, VertexStatus};

/// What each member answered for its own vertices (`me`'s own included),
/// gathered for job `name` (all jobs: `None`) as `metadata` places them: a
/// member that does not answer has its vertices listed as unreachable, one
/// that has not started them as starting, and a vertex a member still
/// reports after it moved away is left out.
pub(super) fn gather(
    metadata: &Metadata,
    me: NodeId,
    name: Option<&str>,
    answers: Vec<(NodeId, Result<Vec<JobStatus>, String>)>,
) -> Vec<JobStatus> {
    let wanted = |job: &str| name.is_none_or(|n| n == job);
    let mut all: BTreeMap<String, JobStatus> = BTreeMap::new();
    for (member, answer) in answers {
        match answer {
            Ok(list) => {
                // A member that does not report a job placed on it has
                // not started its vertices yet.
                for job in metadata.jobs.values().filter(|j| wanted(&j.spec.name)) {
                    if !list
                        .iter()
                        .any(|s| s.name == job.spec.name && s.id == job.id)
                    {
                        placeholders(&mut all, job, member, "starting", None);
                    }
                }
                for mut status in list {
                    let placed = metadata
                        .jobs
                        .get(&status.name)
                        .is_some_and(|j| j.id == status.id);
                    if !wanted(&status.name) || (member != me && !placed) {
                        continue;
                    }
                    // A member that has not yet stopped the vertices
                    // that moved away from it (it was thought lost, or
                    // drained) still reports them: each vertex is listed
                    // where the placement runs it.
                    let job = metadata.jobs.get(&status.name).filter(|_| placed);
                    if let Some(job) = job {
                        let runs: BTreeSet<&str> = job.runs_on(member).collect();
                        status
                            .vertices
                            .retain(|v| v.role == "job" || runs.contains(v.vertex()));
                    }
                    let entry = all.entry(status.name.clone()).or_insert_with(|| JobStatus {
                        vertices: Vec::new(),
                        ..status.clone()
                    });
                    let reported: BTreeSet<String> = status
                        .vertices
                        .iter()
                        .map(|v| v.vertex().to_string())
                        .collect();
                    entry
                        .vertices
                        .extend(status.vertices.into_iter().map(|mut v| {
                            v.member = placed.then_some(member);
                            v.backed_up_on = job.and_then(|j| j.backups.get(v.vertex()).copied());
                            // An instance beside the vertex, not what
                            // readers elsewhere read.
                            if job.is_some_and(|j| {
                                j.replicas.get(&v.name).is_some_and(|r| r.contains(&member))
                            }) {
                                v.role = format!("{} replica", v.role);
                            }
                            // A drained, straggling or moving vertex's
                            // duplicate, catching up to take its place.
                            if job.is_some_and(|j| {
                                j.duplicates.get(&v.name) == Some(&member)
                                    && j.placement.get(&v.name) != Some(&member)
                            }) {
                                v.role = format!("{} duplicate", v.role);
                            }
                            v
                        }));
                    // Vertices just moved to the member, which has not
                    // started them yet: the job is not done.
                    if let Some(job) = job {
                        let missing = job.on(member).filter(|v| !reported.contains(*v));
                        entry.vertices.extend(missing.map(|v| VertexStatus {
                            name: v.to_string(),
                            role: "vertex".into(),
                            member: Some(member),
                            state: "starting".into(),
                            ..VertexStatus::default()
                        }));
                    }
                }
            }
            Err(why) => {
                for job in metadata.jobs.values().filter(|j| wanted(&j.spec.name)) {
                    placeholders(&mut all, job, member, "unreachable", Some(&why));
                }
            }
        }
    }
    all.into_values()
        .map(|mut s| {
            s.state = crate::jobs::job_state(&s.vertices).into();
            s
        })
        .collect()
}

/// Lists the vertices `member` runs of `job` by name only, in `state`.
fn placeholders(
    all: &mut BTreeMap<String, JobStatus>,
    job: &ClusterJob,
    member: NodeId,
    state: &str,
    why: Option<&String>,
) {
    let entry = all
        .entry(job.spec.name.clone())
        .or_insert_with(|| JobStatus {
            name: job.spec.name.clone(),
            id: job.id,
            state: String::new(),
            vertices: Vec::new(),
        });
    entry.vertices.extend(job.on(member).map(|v| VertexStatus {
        name: v.to_string(),
        role: "vertex".into(),
        member: Some(member),
        state: state.into(),
        error: why.cloned(),
        ..VertexStatus::default()
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Job `q` (id 1) with `Bid` on member 1 and `Count` and the sink on
    /// member 2 (they moved there from member 3, which was thought lost).
    fn metadata() -> Metadata {
        serde_json::from_value(serde_json::json!({
            "members": {},
            "next_id": 4,
            "jobs": {"q": {
                "spec": {
                    "name": "q", "path": "q.wsql", "text": "", "parallelism": 1,
                    "modules": {}, "origin": 1, "vertices": ["Bid", "Count", "sink0"],
                },
                "id": 1,
                "placement": {"Bid": 1, "Count": 2, "sink0": 2},
                "patches": [], "backups": {"Bid": 2, "Count": 1, "sink0": 1},
                "ready": [], "snapshotted": [], "timelines": {},
                "duplicates": {}, "replicas": {}, "stragglers": [],
            }},
        }))
        .expect("metadata")
    }

    fn vertex(name: &str, state: &str) -> VertexStatus {
        let sink = name.ends_with(".jsonl");
        VertexStatus {
            name: name.into(),
            role: if sink { "sink" } else { "stage" }.into(),
            vertex: sink.then(|| "sink0".into()),
            state: state.into(),
            ..VertexStatus::default()
        }
    }

    fn report(vertices: &[(&str, &str)]) -> Result<Vec<JobStatus>, String> {
        Ok(vec![JobStatus {
            name: "q".into(),
            id: 1,
            state: String::new(),
            vertices: vertices.iter().map(|(n, s)| vertex(n, s)).collect(),
        }])
    }

    fn listed(list: &[JobStatus]) -> Vec<(String, Option<u64>, String)> {
        let mut v: Vec<_> = list[0]
            .vertices
            .iter()
            .map(|v| (v.name.clone(), v.member, v.state.clone()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_vertex_is_listed_where_the_placement_runs_it_and_once() {
        let m = metadata();
        // Member 3, asked, still reports what moved away from it.
        let list = gather(
            &m,
            3,
            Some("q"),
            vec![
                (
                    3,
                    report(&[("Count", "running"), ("out/q.jsonl", "running")]),
                ),
                (1, report(&[("Bid", "finished")])),
                (
                    2,
                    report(&[("Count", "finished"), ("out/q.jsonl", "finished")]),
                ),
            ],
        );
        let row = |n: &str, m: u64, s: &str| (n.to_string(), Some(m), s.to_string());
        assert_eq!(
            listed(&list),
            [
                row("Bid", 1, "finished"),
                row("Count", 2, "finished"),
                row("out/q.jsonl", 2, "finished")
            ]
        );
        assert_eq!(list[0].state, "finished");

        // A member that has not started a vertex moved to it lists it as
        // starting (its sink, reported under its file's name, is there);
        // one that does not answer, its vertices as unreachable.
        let list = gather(
            &m,
            3,
            None,
            vec![
                (3, report(&[("Count", "running")])),
                (1, Err("member 1 does not answer".into())),
                (2, report(&[("out/q.jsonl", "running")])),
            ],
        );
        assert_eq!(
            listed(&list),
            [
                row("Bid", 1, "unreachable"),
                row("Count", 2, "starting"),
                row("out/q.jsonl", 2, "running")
            ]
        );
        assert_eq!(list[0].state, "running");
    }

    /// A duplicate catching up to take a vertex's place is listed beside
    /// it, on its own member, marked as one; so is each vertex's backup.
    #[test]
    fn a_duplicate_is_listed_as_one() {
        let mut m = metadata();
        let job = m.jobs.get_mut("q").expect("job q");
        job.duplicates.insert("Count".into(), 1);
        let list = gather(
            &m,
            1,
            Some("q"),
            vec![
                (1, report(&[("Bid", "running"), ("Count", "running")])),
                (
                    2,
                    report(&[("Count", "running"), ("out/q.jsonl", "running")]),
                ),
            ],
        );
        let mut roles: Vec<_> = list[0]
            .vertices
            .iter()
            .map(|v| (v.name.as_str(), v.member, v.role.as_str(), v.backed_up_on))
            .collect();
        roles.sort();
        assert_eq!(
            roles,
            [
                ("Bid", Some(1), "stage", Some(2)),
                ("Count", Some(1), "stage duplicate", Some(1)),
                ("Count", Some(2), "stage", Some(1)),
                ("out/q.jsonl", Some(2), "sink", Some(1)),
            ]
        );
    }
}
