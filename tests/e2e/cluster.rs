//! A cluster of real `weir node` processes on 127.0.0.1: members join
//! through one another, the coordinator's metadata survives the loss of any
//! one of three members (its own included, disk and all), and only a node
//! certificate of the cluster's CA makes a process a member.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::node::{Node, cluster, ok};
use super::{stderr, weir};

/// Heartbeat timeout of the test clusters.
pub(crate) const TIMEOUT: &str = "300ms";

pub(crate) fn member(
    dir: &Path,
    data: &str,
    listen: &str,
    join: Option<&str>,
) -> Result<Node, String> {
    member_with(dir, data, listen, join, &[], TIMEOUT)
}

/// A member started with `env` besides the tests' log filter, and
/// heartbeat timeout `timeout`.
pub(crate) fn member_with(
    dir: &Path,
    data: &str,
    listen: &str,
    join: Option<&str>,
    env: &[(&str, &str)],
    timeout: &str,
) -> Result<Node, String> {
    let mut more = vec!["--heartbeat-timeout", timeout];
    if let Some(seed) = join {
        more.extend(["--join", seed]);
    }
    // What the tests read of its log: how vertices move between members
    // (WEIR_TEST_MEMBER_LOG, when set, is the filter instead, for a look
    // at a failure).
    let filter = std::env::var("WEIR_TEST_MEMBER_LOG").unwrap_or_else(|_| MEMBER_LOG.into());
    let mut all = vec![("WEIR_LOG", filter.as_str())];
    all.extend_from_slice(env);
    Node::start_args(dir, data, listen, &more, &all)
}

/// What the members started in `dir` (data directories d1, d2, d3) logged.
pub(crate) fn member_logs(dir: &Path) -> String {
    ["d1", "d2", "d3"]
        .iter()
        .filter_map(|data| {
            let log = std::fs::read_to_string(dir.join(format!("{data}.log"))).ok()?;
            Some(format!("== {data}.log\n{log}"))
        })
        .collect()
}

/// Prints the members' logs to the test's output and says so, for a
/// failure message: the message then ends the output (where a shortened
/// copy of it keeps the end) instead of being buried above the logs.
pub(crate) fn logs_above(dir: &Path) -> &'static str {
    eprintln!("{}", member_logs(dir));
    "(the members' logs are printed above)"
}

/// Each stream a `weir stream list` shows, with the seqs it holds:
/// `(name, low, next)`.
pub(crate) fn stream_spans(list: &str) -> impl Iterator<Item = (&str, u64, u64)> {
    list.lines().filter_map(|line| {
        let (name, range) = line.split_once("\tseq ")?;
        let (low, next) = range.split_once("..")?;
        let next = next.split_whitespace().next()?;
        Some((name, low.parse().ok()?, next.parse().ok()?))
    })
}

/// The log filter of the members the tests start.
const MEMBER_LOG: &str = "warn,weir::udf=info,openraft=off,weir_node::jobs::placed=info,weir_node::jobs::timelines=info,weir_node::node::backup=info,weir_node::jobs::backup=info,weir_node::node::stragglers=info";

fn status(dir: &Path, node: &Node) -> Option<Value> {
    let out = node.weir(dir, &["cluster", "status", "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("status is JSON"))
}

/// Polls `node`'s status until `done` holds, for at most 30 s.
pub(crate) fn until(dir: &Path, node: &Node, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    until_within(dir, node, what, Duration::from_secs(30), done)
}

/// Polls `node`'s status until `done` holds, for at most `patience`.
pub(crate) fn until_within(
    dir: &Path,
    node: &Node,
    what: &str,
    patience: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + patience;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(s) = status(dir, node) {
            if done(&s) {
                return s;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(s) = &last {
        where_each_member_stands(dir, s);
    }
    panic!(
        "{what}: not within {patience:?}; last status {last:?}\n{}",
        logs_above(dir)
    );
}

/// Prints what each member up in status `s` holds of each stream and
/// where its vertices stand, for a test that waited in vain.
fn where_each_member_stands(dir: &Path, s: &Value) {
    for m in members(s).iter().filter(|m| m["health"] == "up") {
        let addr = m["addr"].as_str().unwrap_or_default();
        for args in [["stream", "list"], ["job", "status"]] {
            let out = weir(&[args[0], args[1], "--node", addr], dir);
            eprintln!(
                "== member {} ({addr}): weir {} {}\n{}{}",
                m["id"],
                args[0],
                args[1],
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            );
        }
    }
}

pub(crate) fn members(s: &Value) -> &Vec<Value> {
    s["members"].as_array().expect("members")
}

fn health_of(s: &Value, id: u64) -> String {
    members(s)
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["health"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn voters(s: &Value) -> Vec<u64> {
    members(s)
        .iter()
        .filter(|m| m["voter"] == true)
        .filter_map(|m| m["id"].as_u64())
        .collect()
}

pub(crate) fn id_at(s: &Value, addr: &str) -> u64 {
    members(s)
        .iter()
        .find(|m| m["addr"] == addr && m["health"] != "replaced")
        .and_then(|m| m["id"].as_u64())
        .expect("a member at the address")
}

#[test]
fn three_members_keep_their_metadata_through_the_loss_of_the_coordinators_node_and_disk() {
    let dir = cluster();
    let d = dir.path();
    let first = member(d, "d1", "127.0.0.1:0", None).expect("the first node starts");
    let mut nodes = vec![first];
    for data in ["d2", "d3"] {
        let seed = nodes[0].addr.clone();
        nodes.push(member(d, data, "127.0.0.1:0", Some(&seed)).expect("a node joins"));
    }
    let three = until(d, &nodes[2], "three voting members up", |s| {
        s["coordinator"].is_u64()
            && members(s).len() == 3
            && members(s).iter().all(|m| m["health"] == "up")
            && voters(s).len() == 3
    });
    let coordinator = three["coordinator"].as_u64().expect("coordinator");
    // Every member names the same coordinator, whichever is asked.
    for node in &nodes {
        let s = status(d, node).expect("status");
        assert_eq!(s["coordinator"].as_u64(), Some(coordinator), "{s}");
    }
    // A job on a member: the status lists its vertices under that member.
    super::nexmark_queries::example(d, "q0", "events => 100000, rate => 1000, pace => 1");
    ok(&nodes[1].weir(d, &["job", "submit", "q0.wsql"]));
    let running = id_at(&three, &nodes[1].addr);
    until(d, &nodes[2], "the member's vertices listed", |s| {
        members(s).iter().any(|m| {
            m["id"] == running
                && m["vertices"].as_array().is_some_and(|vs| {
                    vs.iter()
                        .any(|v| v["job"] == "q0" && v["state"] == "running")
                })
        })
    });
    // A client certificate reads the status; the table names the coordinator.
    let table = ok(&nodes[0].weir(d, &["cluster", "status", "--identity", "client"]));
    assert!(
        table.contains(&format!("coordinator: member {coordinator}")) && table.contains("q0/"),
        "{table}"
    );

    // kill -9 the coordinator's node and delete its data directory.
    let at = nodes
        .iter()
        .position(|n| id_at(&three, &n.addr) == coordinator)
        .expect("the coordinator is one of the nodes");
    let dead = nodes.remove(at);
    let dead_addr = dead.addr.clone();
    dead.kill9();
    std::fs::remove_dir_all(d.join(["d1", "d2", "d3"][at])).expect("delete its disk");
    let after = until(
        d,
        &nodes[0],
        "a new coordinator declares the old one lost",
        |s| {
            s["coordinator"].as_u64().is_some_and(|c| c != coordinator)
                && health_of(s, coordinator) == "lost"
        },
    );
    // The lost member keeps its vote while no member can take its place:
    // two voters could not lose another.
    assert_eq!(voters(&after).len(), 3, "{after}");
    // Nothing of the metadata is lost: every member is still listed.
    assert_eq!(members(&after).len(), 3, "{after}");
    let new_coordinator = after["coordinator"].as_u64().expect("coordinator");
    let other = status(d, &nodes[1]).expect("status");
    assert_eq!(
        other["coordinator"].as_u64(),
        Some(new_coordinator),
        "{other}"
    );

    // A new node at the lost one's address, with an empty disk, replaces it.
    let survivor = nodes[0].addr.clone();
    let fresh = member(d, "d4", &dead_addr, Some(&survivor)).expect("a new node joins");
    let four = until(
        d,
        &fresh,
        "the new member votes in place of the lost one",
        |s| {
            health_of(s, coordinator) == "replaced"
                && members(s).len() == 4
                && voters(s).len() == 3
                && !voters(s).contains(&coordinator)
                && members(s).iter().filter(|m| m["health"] == "up").count() == 3
        },
    );
    let fresh_id = id_at(&four, &dead_addr);
    assert!(voters(&four).contains(&fresh_id), "{four}");
    assert!(fresh_id > 3, "ids are never reused: {four}");
    nodes.push(fresh);

    // A member restarted on its disk keeps its id and comes back up.
    let restarted_addr = nodes[1].addr.clone();
    let restarted_id = id_at(&four, &restarted_addr);
    let data = ["d1", "d2", "d3"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .map(|(_, d)| d)
        .nth(1)
        .expect("data dir");
    nodes.remove(1).kill9();
    until(d, &nodes[0], "the killed member is lost", |s| {
        health_of(s, restarted_id) == "lost"
    });
    nodes.push(member(d, data, &restarted_addr, None).expect("restart on its disk"));
    let back = until(d, &nodes[0], "the restarted member is back", |s| {
        health_of(s, restarted_id) == "up" && voters(s).contains(&restarted_id)
    });
    assert_eq!(members(&back).len(), 4, "{back}");
}

#[test]
fn only_a_node_certificate_of_the_clusters_ca_makes_a_member() {
    let dir = cluster();
    let d = dir.path();
    let seed = member(d, "d1", "127.0.0.1:0", None).expect("the first node starts");
    until(d, &seed, "a coordinator", |s| s["coordinator"].is_u64());

    // A process presenting a client certificate as its node certificate.
    let pretender = d.join("pretender");
    std::fs::create_dir(&pretender).expect("mkdir");
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("client.pem", "node.pem"),
        ("client.key", "node.key"),
    ] {
        std::fs::copy(d.join("certs").join(from), pretender.join(to)).expect("copy");
    }
    let out = weir(
        &[
            "node",
            "start",
            "--data",
            "p",
            "--listen",
            "127.0.0.1:0",
            "--certs",
            "pretender",
            "--join",
            &seed.addr,
        ],
        d,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot join the cluster") && err.contains("take part in the cluster"),
        "{err}"
    );

    // A node of another cluster's CA is refused at the handshake.
    ok(&weir(&["cluster", "init", "--dir", "other"], d));
    let out = weir(
        &[
            "node",
            "start",
            "--data",
            "o",
            "--listen",
            "127.0.0.1:0",
            "--certs",
            "other",
            "--join",
            &seed.addr,
        ],
        d,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot join the cluster"), "{err}");

    // Neither became a member.
    let s = status(d, &seed).expect("status");
    assert_eq!(members(&s).len(), 1, "{s}");
}

/// Network namespaces on one bridge (`ip netns`, as root): member `i`
/// listens on 10.77.`k`.`i`, the test's own commands reach them from
/// 10.77.`k`.254, where `k` tells apart the namespaces of tests running at
/// once. Removed when dropped.
pub(crate) struct Namespaces {
    tag: String,
    count: usize,
    subnet: usize,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Namespaces {
    pub(crate) fn new(count: usize) -> Namespaces {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let subnet = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}x{subnet}", std::process::id() % 100_000);
        let ns = Namespaces { tag, count, subnet };
        let bridge = ns.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let own = format!("10.77.{subnet}.254/24");
        ip(&["addr", "add", &own, "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 1..=count {
            let (name, veth) = (ns.name(i), ns.veth(i));
            ip(&["netns", "add", &name]);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ]);
            ip(&["link", "set", &veth, "master", &bridge, "up"]);
            let addr = format!("{}/24", ns.ip_of(i));
            ip(&["-n", &name, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &name, "link", "set", "eth0", "up"]);
            ip(&["-n", &name, "link", "set", "lo", "up"]);
        }
        ns
    }
    /// Starts a `weir node` in each namespace, listening on port 7001 of its
    /// address with the test heartbeat timeout; the first founds the
    /// cluster and the others join it.
    pub(crate) fn start_members(&self, dir: &std::path::Path) -> Vec<Node> {
        let first = format!("{}:7001", self.ip_of(1));
        (1..=self.count)
            .map(|i| {
                let mut args = vec!["--heartbeat-timeout", TIMEOUT];
                if i > 1 {
                    args.extend(["--join", &first]);
                }
                let listen = format!("{}:7001", self.ip_of(i));
                Node::start_in(&self.name(i), dir, &format!("d{i}"), &listen, &args)
                    .unwrap_or_else(|e| panic!("member {i} starts: {e}"))
            })
            .collect()
    }
    /// Member `i`'s address.
    pub(crate) fn ip_of(&self, i: usize) -> String {
        format!("10.77.{}.{i}", self.subnet)
    }
    fn bridge(&self) -> String {
        format!("wb{}", self.tag)
    }
    pub(crate) fn name(&self, i: usize) -> String {
        format!("weir{}-{i}", self.tag)
    }
    fn veth(&self, i: usize) -> String {
        format!("wv{}-{i}", self.tag)
    }
    /// Cuts member `i` off the bridge (`up` false) or joins it again.
    pub(crate) fn link(&self, i: usize, up: bool) {
        ip(&["link", "set", &self.veth(i), if up { "up" } else { "down" }]);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for i in 1..=self.count {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name(i)])
                .status();
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .status();
    }
}

#[test]
fn a_partitioned_coordinator_is_lost_to_the_majority_and_follows_again_when_healed() {
    let dir = cluster();
    let d = dir.path();
    let net = Namespaces::new(3);
    let nodes = net.start_members(d);
    let three = until(d, &nodes[1], "three voting members up", |s| {
        members(s).len() == 3
            && members(s)
                .iter()
                .all(|m| m["health"] == "up" && m["voter"] == true)
            && s["coordinator"].is_u64()
    });
    let coordinator = three["coordinator"].as_u64().expect("coordinator");
    let at = nodes
        .iter()
        .position(|n| id_at(&three, &n.addr) == coordinator)
        .expect("the coordinator's node")
        + 1;
    let other = if at == 1 { 2 } else { 1 };

    // Cut the coordinator off: the other two elect one of themselves and
    // declare it lost; its process keeps running.
    net.link(at, false);
    let split = until(
        d,
        &nodes[other - 1],
        "the majority declares the old coordinator lost",
        |s| {
            s["coordinator"].as_u64().is_some_and(|c| c != coordinator)
                && health_of(s, coordinator) == "lost"
        },
    );
    assert_eq!(members(&split).len(), 3, "{split}");

    // Healed: it follows the new coordinator and is up again.
    net.link(at, true);
    let new = split["coordinator"].as_u64().expect("coordinator");
    let healed = until(
        d,
        &nodes[at - 1],
        "the healed member follows and is up",
        |s| {
            s["coordinator"].as_u64() == Some(new)
                && members(s)
                    .iter()
                    .all(|m| m["health"] == "up" && m["voter"] == true)
        },
    );
    assert_eq!(members(&healed).len(), 3, "{healed}");
}

/// A member's malformed coordinator messages get an error each, naming
/// what was wrong; the connection stays usable and the cluster keeps its
/// coordinator.
#[test]
fn a_malformed_coordinator_message_gets_an_error_and_nothing_else_breaks() {
    use weir::net::{Client, Request, Response};
    use weir_net::cluster::{ClusterRequest, RaftRpc};
    let dir = cluster();
    let d = dir.path();
    let node = member(d, "d1", "127.0.0.1:0", None).expect("the first node starts");
    let before = until(d, &node, "a coordinator", |s| s["coordinator"].is_u64());
    let me = before["coordinator"].as_u64().expect("coordinator");
    let certs = weir::net::CertDir::with_identity(&d.join("certs"), Some("node".into()));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let addr = node.addr.parse().expect("address");
        let client = Client::connect(addr, &certs).await.expect("connects");
        let raft = |target: u64, rpc: RaftRpc, payload: serde_json::Value| {
            Request::Cluster(ClusterRequest::Raft {
                target,
                rpc,
                payload,
            })
        };
        for (request, says) in [
            (
                raft(me, RaftRpc::Vote, serde_json::json!({"vote": 7})),
                "Vote",
            ),
            (
                raft(me, RaftRpc::AppendEntries, serde_json::json!("x")),
                "AppendEntries",
            ),
            (
                raft(me + 40, RaftRpc::Vote, serde_json::json!({})),
                "reached member",
            ),
        ] {
            match client.answer(&request, None).await.expect("an answer") {
                Response::Error { message } => {
                    assert!(message.contains(says), "{message}")
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        let pong = client.call(&Request::Ping, None).await.expect("ping");
        assert!(matches!(pong, Response::Ok { .. }));
        client.close().await;
    });
    let after = status(d, &node).expect("status");
    assert_eq!(after["coordinator"].as_u64(), Some(me), "{after}");
    assert_eq!(after["term"], before["term"], "{after}");
}

/// With two of three members down, a change through the survivor, the
/// coordinator's member, is refused saying that a majority is needed, and
/// it is not made later either: with the two back, the stream it would
/// have created does not exist, and creating it then works.
#[test]
fn a_change_without_a_majority_is_refused_and_not_made_later() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = super::cluster_jobs::three(d);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let coordinator = up["coordinator"].as_u64().expect("coordinator");
    let keep = nodes
        .iter()
        .position(|n| id_at(&up, &n.addr) == coordinator)
        .expect("the coordinator's node");
    let mut gone = Vec::new();
    for i in (0..3).rev().filter(|i| *i != keep) {
        let node = nodes.remove(i);
        gone.push((["d1", "d2", "d3"][i], node.addr.clone()));
        node.kill9();
    }
    let create = |node: &Node| {
        node.weir(
            d,
            &[
                "stream",
                "create",
                "late",
                "--columns",
                "user:utf8,ts:int64",
                "--time",
                "ts",
            ],
        )
    };
    let out = create(&nodes[0]);
    assert!(
        !out.status.success() && stderr(&out).contains("is a majority of the members up?"),
        "{}",
        stderr(&out)
    );
    for (data, addr) in gone {
        nodes.push(member(d, data, &addr, None).expect("the member restarts"));
    }
    until(d, &nodes[0], "three members up", |s| {
        s["coordinator"].is_u64()
            && members(s).len() == 3
            && members(s).iter().all(|m| m["health"] == "up")
    });
    for node in &nodes {
        let list = ok(&node.weir(d, &["stream", "list"]));
        assert!(!list.contains("late"), "{}: {list}", node.addr);
    }
    ok(&create(&nodes[1]));
}
