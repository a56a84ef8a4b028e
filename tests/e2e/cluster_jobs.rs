//! Jobs in a cluster of real `weir node` processes: a job submitted to any
//! member has its vertices placed over the members, the streams between
//! vertices on different members travel between them over QUIC, and the
//! output is byte for byte what `weir run` writes.

use std::path::Path;

use serde_json::Value;

use super::cluster::{TIMEOUT, id_at, logs_above, member, member_with, members, until};
use super::node::{Node, cluster, ok};
use super::{stderr, weir};

/// Three members up, with a coordinator.
pub(super) fn three(d: &Path) -> Vec<Node> {
    three_with(d, &[], TIMEOUT)
}

/// Three members started with `env` and heartbeat timeout `timeout`, once
/// all are up and vote (a member that joined last is up before the
/// coordinator makes it a voter; until then the first member alone is a
/// majority).
pub(super) fn three_with(d: &Path, env: &[(&str, &str)], timeout: &str) -> Vec<Node> {
    three_each(d, |_| env.to_vec(), timeout)
}

/// Three members, `dN` slowed through the test hook `WEIR_TEST_SLOW_FILE`
/// by the file `slow-dN`, once all are up and vote.
pub(super) fn three_slowable(d: &Path, timeout: &str) -> Vec<Node> {
    three_slowable_with(d, timeout, None)
}

/// [`three_slowable`], member `slow` (0-based) storing backups only
/// every `every_ms` milliseconds, its first round too (the test hook
/// `WEIR_TEST_BACKUP_EVERY_MS`; `600000`: never in a test's time).
pub(super) fn three_slowable_with(
    d: &Path,
    timeout: &str,
    slow: Option<(usize, &str)>,
) -> Vec<Node> {
    let files = ["slow-d1", "slow-d2", "slow-d3"];
    let each = |i: usize| {
        let mut all = vec![("WEIR_TEST_SLOW_FILE", files[i])];
        if let Some((_, every_ms)) = slow.filter(|(member, _)| *member == i) {
            all.push(("WEIR_TEST_BACKUP_EVERY_MS", every_ms));
        }
        all
    };
    three_each(d, each, timeout)
}

/// Three members, member `i` (0-based) started with `env(i)`, once all
/// are up and vote.
fn three_each<'a>(
    d: &Path,
    env: impl Fn(usize) -> Vec<(&'a str, &'a str)>,
    timeout: &str,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, data) in ["d1", "d2", "d3"].into_iter().enumerate() {
        let seed = nodes.first().map(|n| n.addr.clone());
        let joined = member_with(d, data, "127.0.0.1:0", seed.as_deref(), &env(i), timeout);
        nodes.push(joined.expect("a node starts"));
    }
    until(d, &nodes[2], "three members up and voting", |s| {
        s["coordinator"].is_u64()
            && members(s).len() == 3
            && members(s)
                .iter()
                .all(|m| m["health"] == "up" && m["voter"] == true)
    });
    nodes
}

/// The vertices of `job` each member reports, with their states.
pub(super) fn vertices(s: &Value, job: &str) -> Vec<(u64, String, String)> {
    members(s)
        .iter()
        .flat_map(|m| {
            let id = m["id"].as_u64().unwrap_or_default();
            m["vertices"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|v| v["job"] == job)
                .map(move |v| {
                    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                    (id, text("vertex"), text("state"))
                })
        })
        .collect()
}

/// Polls the cluster's status on `node` until `done` holds of job `job`'s
/// vertices (member, vertex, state), for at most `patience`; returns the
/// status. A vertex that failed ends the test with the job's status.
pub(super) fn until_vertices(
    d: &Path,
    node: &Node,
    job: &str,
    patience: std::time::Duration,
    done: impl Fn(&[(u64, String, String)]) -> bool,
) -> Value {
    super::cluster::until_within(d, node, "every vertex finished", patience, |s| {
        let v = vertices(s, job);
        if v.iter().any(|(_, _, state)| state == "failed") {
            let out = node.weir(d, &["job", "status", job, "--json"]);
            panic!(
                "{job}: a vertex failed: {v:?}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        done(&v)
    })
}

/// Polls `weir job status JOB --json` on `node` until `done` holds, for
/// at most 30 s; returns the job's status.
pub(super) fn job_status(d: &Path, node: &Node, job: &str, done: impl Fn(&Value) -> bool) -> Value {
    job_status_within(d, node, job, std::time::Duration::from_secs(30), done)
}

/// [`job_status`], for at most `patience`.
pub(super) fn job_status_within(
    d: &Path,
    node: &Node,
    job: &str,
    patience: std::time::Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let out = node.weir(d, &["job", "status", job, "--json"]);
        let status: Option<Value> = out.status.success().then(|| {
            serde_json::from_slice::<Value>(&out.stdout).expect("status is JSON")[0].clone()
        });
        if let Some(s) = status.filter(|s| done(s)) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{job}: not done within {patience:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out),
            logs_above(d)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits until job `q` is `done` as `node` sees it, checks that it
/// finished, and returns what it wrote.
pub(super) fn finished_output(
    d: &Path,
    node: &Node,
    q: &str,
    done: impl Fn(&Value) -> bool,
) -> String {
    let status = job_status(d, node, q, done);
    assert!(
        status["state"] == "finished",
        "{q} did not finish: {status}\n{}",
        logs_above(d)
    );
    std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).expect("output")
}

/// What `weir run` writes for `examples/nexmark/{q}.wsql` in `d`.
pub(super) fn offline(d: &Path, q: &str) -> String {
    let out = weir(&["run", &format!("{q}.wsql"), "--quiet"], d);
    assert!(out.status.success(), "{q}: {}", stderr(&out));
    let path = d.join(format!("out/{q}.jsonl"));
    let text = std::fs::read_to_string(&path).expect("offline output");
    std::fs::remove_file(&path).expect("remove");
    text
}

/// Submits `q` at parallelism 6 through `via`; returns how many vertices
/// each member got, as the answer lists them.
pub(super) fn submit(d: &Path, via: &Node, q: &str) -> Vec<usize> {
    let out = ok(&via.weir(
        d,
        &["job", "submit", &format!("{q}.wsql"), "--parallelism", "6"],
    ));
    assert!(out.contains("submitted to the cluster"), "{out}");
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("member "))
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// Nexmark queries at parallelism 6 over three members (two with UDF
/// components, whose modules travel to the members that run them; their partitions,
/// copies, merges and sinks spread over all three, the exchanges crossing
/// members) write byte for byte what `weir run` writes on one process.
#[test]
fn queries_placed_over_three_members_write_what_weir_run_writes() {
    let dir = cluster();
    let d = dir.path();
    let nodes = three(d);
    for (i, q) in ["q5", "q4", "q8", "q1_wasm", "q7_median"]
        .into_iter()
        .enumerate()
    {
        super::nexmark_queries::example(d, q, "events => 40000, rate => 10000, pace => 0");
        let want = offline(d, q);
        assert!(!want.is_empty(), "{q} has output");
        let per_member = submit(d, &nodes[i % 3], q);
        assert_eq!(per_member.len(), 3, "{q}: every member runs a part");
        let total: usize = per_member.iter().sum();
        let max = per_member.iter().max().copied().unwrap_or(0);
        let min = per_member.iter().min().copied().unwrap_or(0);
        assert!(max - min <= 1, "{q}: balanced placement {per_member:?}");
        // Any member answers for the whole job.
        let status = job_status(d, &nodes[(i + 1) % 3], q, |s| s["state"] != "running");
        assert_eq!(status["state"], "finished", "{q}: {status}");
        let vertices = status["vertices"].as_array().expect("vertices");
        assert_eq!(vertices.len(), total, "{q}: {status}");
        // Every vertex names the member that runs it (a member that a busy
        // machine kept silent past the heartbeat timeout has its vertices
        // moved to their backups, so not every member need run one now).
        assert!(
            vertices.iter().all(|v| v["member"].is_u64()),
            "{q}: a vertex without its member: {status}"
        );
        let got = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).expect("output");
        assert!(
            got == want,
            "{q}: the cluster's output differs from weir run's"
        );
        ok(&nodes[(i + 2) % 3].weir(d, &["job", "cancel", q]));
    }
}

/// A member killed with `kill -9` mid-run and restarted on its data
/// directory: its vertices resume from their snapshots, its copies of other
/// members' streams refill from where they stopped, the other members'
/// pulls from it reconnect; the output is byte for byte `weir run`'s.
#[test]
fn a_member_killed_mid_run_and_restarted_changes_no_output_byte() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = three(d);
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 60000, rate => 20000, pace => 1");
    let want = offline(d, q);
    let per_member = submit(d, &nodes[0], q);
    assert_eq!(per_member.len(), 3, "the killed member runs a part");
    let total: usize = per_member.iter().sum();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let dead = nodes.pop().expect("a third node");
    let addr = dead.addr.clone();
    dead.kill9();
    let partial = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).unwrap_or_default();
    assert!(partial.len() < want.len(), "killed mid-run");
    // The job's status, from a survivor, names the vertices it cannot reach.
    let status = job_status(d, &nodes[0], q, |s| {
        s["vertices"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["state"] == "unreachable"))
    });
    let text = status.to_string();
    assert!(
        text.contains(&format!("at {addr} does not answer"))
            || text.contains(&format!(
                "at {addr} is lost, and these vertices wait for it"
            )),
        "{text}"
    );
    nodes.push(member(d, "d3", &addr, None).expect("the member restarts"));
    until(d, &nodes[0], "every vertex finished", |s| {
        let v = vertices(s, q);
        assert!(
            !v.iter().any(|(_, _, state)| state == "failed"),
            "{q}: a vertex failed: {v:?}"
        );
        v.len() == total && v.iter().all(|(_, _, state)| state == "finished")
    });
    let got = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).expect("output");
    assert!(
        got == want,
        "{q}: the output after the kill differs from weir run's"
    );
}

/// A member's pull of a stream this node does not hold, a request for a
/// module it does not store, and a change that is no change get errors
/// naming them; a client or admin certificate may do none of them; the
/// node serves on.
#[test]
fn bad_pulls_module_requests_and_proposals_get_errors_naming_them() {
    use weir::net::{CertDir, Client, Request, Response};
    use weir_net::cluster::ClusterRequest;
    let dir = cluster();
    let d = dir.path();
    let node = member(d, "d1", "127.0.0.1:0", None).expect("the node starts");
    until(d, &node, "a coordinator", |s| s["coordinator"].is_u64());
    let pull = Request::Pull {
        stream: "nope@1.Bid".into(),
        from: 0,
        reader: "pull/nope@1/Bid@2".into(),
        behind: false,
    };
    let module = Request::Module {
        version: "ab".repeat(32),
    };
    let propose = Request::Cluster(ClusterRequest::Propose(serde_json::json!({"Launch": 1})));
    let replicate = Request::Replicate {
        stream: "nope".into(),
        primary: 7,
        records: Vec::new(),
        evicted: Vec::new(),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let addr = node.addr.parse().expect("address");
        let as_node = CertDir::with_identity(&d.join("certs"), Some("node".into()));
        let client = Client::connect(addr, &as_node).await.expect("connects");
        for (request, says) in [
            (&pull, "nope@1.Bid"),
            (&module, "is not stored on this member"),
            (&propose, "a proposed change"),
            (&replicate, "does not hold stream `nope` for member 7"),
        ] {
            match client.answer(request, None).await.expect("an answer") {
                Response::Error { message } => assert!(message.contains(says), "{message}"),
                other => panic!("expected an error, got {other:?}"),
            }
        }
        client.close().await;
        for identity in ["admin", "client"] {
            let certs = CertDir::with_identity(&d.join("certs"), Some(identity.into()));
            let client = Client::connect(addr, &certs).await.expect("connects");
            for request in [&pull, &module, &propose, &replicate] {
                match client.answer(request, None).await.expect("an answer") {
                    Response::Error { message } => {
                        assert!(message.contains("refused"), "{identity}: {message}")
                    }
                    other => panic!("{identity}: expected a refusal, got {other:?}"),
                }
            }
            client.close().await;
        }
    });
    until(d, &node, "the node serves on", |s| {
        s["coordinator"].is_u64()
    });
}

/// A member serves a pull of a job stream only where the stream's writer
/// runs: another member's copy of it (a reader's, a backup's) is read by
/// the vertices that start there, which register their holds as they
/// start, and a pull served from it before would let the puller's
/// acknowledgements collect what they need.
#[test]
fn a_pull_of_a_stream_from_a_member_that_only_copies_it_is_refused() {
    use weir::net::{CertDir, Client, Request, Response};
    let dir = cluster();
    let d = dir.path();
    let nodes = three(d);
    let q = "q1";
    super::nexmark_queries::example(d, q, "events => 200000, rate => 2000, pace => 1");
    submit(d, &nodes[0], q);
    let status = until_vertices(d, &nodes[0], q, std::time::Duration::from_secs(60), |v| {
        v.len() >= 3 && v.iter().all(|(_, _, state)| state == "running")
    });
    let listed = |node: &Node| {
        let out = node.weir(d, &["stream", "list"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A vertex's output stream that a member not running the vertex holds
    // a copy of.
    let (stream, writer, copier) = vertices(&status, q)
        .into_iter()
        .find_map(|(on, vertex, _)| {
            let writer = nodes.iter().position(|n| id_at(&status, &n.addr) == on)?;
            let suffix = format!(".{vertex}");
            (0..3).filter(|i| *i != writer).find_map(|i| {
                let list = listed(&nodes[i]);
                let name = super::cluster::stream_spans(&list)
                    .map(|(name, ..)| name)
                    .find(|name| name.starts_with(&format!("{q}@")) && name.ends_with(&suffix))?
                    .to_string();
                Some((name, writer, i))
            })
        })
        .expect("a stream copied on a member that does not write it");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let as_node = CertDir::with_identity(&d.join("certs"), Some("node".into()));
    let pull = Request::Pull {
        stream: stream.clone(),
        from: 0,
        reader: format!("pull/{q}/test@9"),
        behind: false,
    };
    let answer = |node: &Node| {
        runtime.block_on(async {
            let addr = node.addr.parse().expect("address");
            let client = Client::connect(addr, &as_node).await.expect("connects");
            let answer = client.answer(&pull, None).await.expect("an answer");
            client.close().await;
            answer
        })
    };
    match answer(&nodes[copier]) {
        Response::Error { message } => assert!(
            message.contains(&stream) && message.contains("writer does not run on this member"),
            "{message}"
        ),
        other => panic!("the copy of `{stream}` was served: {other:?}"),
    }
    match answer(&nodes[writer]) {
        Response::Ok { .. } => {}
        other => panic!("the writer's member did not serve `{stream}`: {other:?}"),
    }
}

/// A member cut off by a network partition (`ip netns`) mid-run: the others
/// declare it lost, its pulls and the pulls from it fail and retry; healed,
/// they resume where they stood and the output is byte for byte `weir
/// run`'s.
#[test]
fn a_member_partitioned_mid_run_changes_no_output_byte_once_healed() {
    use super::cluster::Namespaces;
    let dir = cluster();
    let d = dir.path();
    let net = Namespaces::new(3);
    let listen = |i: usize| format!("{}:7001", net.ip_of(i));
    let nodes = net.start_members(d);
    let up = until(d, &nodes[0], "three members up", |s| {
        s["coordinator"].is_u64()
            && members(s).len() == 3
            && members(s).iter().all(|m| m["health"] == "up")
    });
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 60000, rate => 20000, pace => 1");
    let want = offline(d, q);
    let per_member = submit(d, &nodes[0], q);
    assert_eq!(per_member.len(), 3, "the cut member runs a part");
    // Cut off a member that is not the coordinator (its vertices move to
    // their backups while it is cut off, and it stops its part once it
    // hears where they run; the coordinator's metadata is not what this
    // test is about).
    let coordinator = up["coordinator"].as_u64().expect("coordinator");
    let cut = (1..=3)
        .rev()
        .find(|i| {
            members(&up)
                .iter()
                .any(|m| m["addr"] == listen(*i) && m["id"] != coordinator)
        })
        .expect("a member that does not coordinate");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    net.link(cut, false);
    let watcher = if cut == 1 { 1 } else { 0 };
    until(d, &nodes[watcher], "the cut member is lost", |s| {
        members(s)
            .iter()
            .any(|m| m["addr"] == listen(cut) && m["health"] == "lost")
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    net.link(cut, true);
    let got = finished_output(d, &nodes[watcher], q, |s| s["state"] == "finished");
    assert!(
        got == want,
        "{q}: the output after the partition differs from weir run's"
    );
}

/// The member that runs q1's source cut off by a partition mid-run, for
/// longer than the heartbeat timeout: it holds no lease and writes nothing
/// while cut off (its generator would write on, with no one to tell it the
/// source resumed elsewhere); healed, it hears where its vertices run now,
/// and the output is byte for byte `weir run`'s.
#[test]
fn a_member_cut_off_mid_run_writes_nothing_until_healed_and_changes_no_output_byte() {
    use super::cluster::Namespaces;
    let dir = cluster();
    let d = dir.path();
    let net = Namespaces::new(3);
    let listen = |i: usize| format!("{}:7001", net.ip_of(i));
    let nodes = net.start_members(d);
    until(d, &nodes[0], "three members up", |s| {
        s["coordinator"].is_u64()
            && members(s).len() == 3
            && members(s).iter().all(|m| m["health"] == "up")
    });
    let q = "q1";
    super::nexmark_queries::example(d, q, "events => 200000, rate => 10000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[0], q);
    let out = d.join(format!("out/{q}.jsonl"));
    let size = || std::fs::metadata(&out).map_or(0, |m| m.len());
    let source_on = |s: &Value| {
        vertices(s, q)
            .into_iter()
            .find(|(_, v, state)| v == "Bid" && state == "running")
            .map(|(m, _, _)| m)
    };
    let running = until(d, &nodes[0], "the output grows", |s| {
        source_on(s).is_some() && size() > 0
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let on = source_on(&running).expect("the source's member");
    let cut = (1..=3)
        .find(|i| {
            members(&running)
                .iter()
                .any(|m| m["addr"] == listen(*i) && m["id"] == on)
        })
        .expect("the source's node");
    net.link(cut, false);
    let at_cut = size();
    let watcher = if cut == 1 { 1 } else { 0 };
    until(
        d,
        &nodes[watcher],
        "the source runs on another member and the output grows",
        |s| source_on(s).is_some_and(|m| m != on) && size() > at_cut,
    );
    // Cut off, the member holds no lease in the cluster and its vertices
    // write nothing (they may run elsewhere now): what it holds of each
    // stream stands still.
    let held = || {
        let out = nodes[cut - 1].weir_in(&net.name(cut), d, &["stream", "list"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        super::cluster::stream_spans(&list)
            .map(|(name, _, next)| (name.to_string(), next))
            .collect::<Vec<_>>()
    };
    let before = held();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(before, held(), "the cut member wrote on");
    net.link(cut, true);
    let got = finished_output(d, &nodes[watcher], q, |s| s["state"] == "finished");
    assert!(
        got == want,
        "{q}: the output after the source's member was cut off differs from weir run's\n{}",
        logs_above(d)
    );
}
