//! A replicated stage (`WITH REPLICATE 2`) in a cluster of real `weir node`
//! processes: each of its rVertices runs on two members, and the loss of a
//! member with its disk moves the ones it ran to their other instance,
//! which runs on without a restart; the output is byte for byte what
//! `weir run` writes.

use serde_json::Value;
use weir::testkit::udf_component;

use std::collections::BTreeMap;

use super::cluster::{id_at, logs_above, member_logs, members, until};
use super::cluster_jobs::{finished_output, job_status, offline, submit, three_with, vertices};
use super::cluster_patch::{change, run_tally, same_rows_by_version};
use super::node::{cluster, ok, write};

/// The replicated stages' vertices: `Counts`, its partitions and copies.
fn replicated(vertex: &str) -> bool {
    vertex == "Counts" || vertex.starts_with("Counts__")
}

/// A member that is not the coordinator's, lost with its disk mid-run.
#[test]
fn a_replicated_stage_loses_a_member_and_its_disk_without_a_restart() {
    lose_a_member_running_replicas(false);
}

/// The coordinator's member lost with its disk mid-run: a new coordinator
/// moves its vertices to their replicas.
#[test]
fn a_replicated_stage_loses_the_coordinators_member_without_a_restart() {
    lose_a_member_running_replicas(true);
}

/// Runs q5 with its aggregate replicated twice over three members, and
/// kills the coordinator's member (`coordinator`) or another mid-run,
/// deleting its data directory.
fn lose_a_member_running_replicas(coordinator: bool) {
    let dir = cluster();
    let d = dir.path();
    // A heartbeat timeout that a loaded machine does not miss: no member
    // is thought lost (and its vertices placed elsewhere) but the one killed.
    let mut nodes = three_with(d, &[], "2s");
    let q = "q5";
    // 24 s of bids: the kill below comes mid-run on a loaded machine too.
    super::nexmark_queries::example(d, q, "events => 480000, rate => 20000, pace => 1");
    let path = d.join(format!("{q}.wsql"));
    let text = std::fs::read_to_string(&path).expect("script");
    let script = text.replace("HOPPING(10s, 2s);", "HOPPING(10s, 2s) WITH REPLICATE 2;");
    assert_ne!(script, text, "q5 has a hopping aggregate to replicate");
    std::fs::write(&path, script).expect("script");
    let want = offline(d, q);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let leader = up["coordinator"].as_u64().expect("coordinator");
    let victim = nodes
        .iter()
        .position(|n| (id_at(&up, &n.addr) == leader) == coordinator)
        .expect("a member to lose");
    let lost = id_at(&up, &nodes[victim].addr);
    let per_member = submit(d, &nodes[(victim + 1) % 3], q);
    let total: usize = per_member.iter().sum();
    // Each replicated vertex runs on two members, one of them marked as
    // its replica.
    let running = until(
        d,
        &nodes[0],
        "every replicated vertex on two members",
        |s| {
            let v = vertices(s, q);
            let names: std::collections::BTreeSet<&String> = v
                .iter()
                .filter(|(_, n, _)| replicated(n))
                .map(|(_, n, _)| n)
                .collect();
            let replicas = members(s)
                .iter()
                .flat_map(|m| m["vertices"].as_array().cloned().unwrap_or_default())
                .filter(|v| v["job"] == q && v["replica"] == true)
                .count();
            !names.is_empty()
                && replicas == names.len()
                && names.iter().all(|n| {
                    v.iter()
                        .filter(|(_, name, state)| name == *n && state == "running")
                        .count()
                        == 2
                })
        },
    );
    let on_victim = vertices(&running, q)
        .into_iter()
        .filter(|(m, n, _)| *m == lost && replicated(n))
        .count();
    assert!(on_victim > 0, "the lost member runs replicated vertices");
    // The member running the replica of `Counts__1` keeps its stream for
    // the member that reads it from the vertex's member, only as far as
    // that one says it still needs: it collects the rest.
    let replica_of = |s: &Value, vertex: &str| {
        members(s).iter().find_map(|m| {
            let listed = m["vertices"]
                .as_array()?
                .iter()
                .any(|v| v["job"] == q && v["vertex"] == vertex && v["replica"] == true);
            listed.then(|| m["id"].as_u64()).flatten()
        })
    };
    let holder = replica_of(&running, "Counts__1").expect("a replica of Counts__1");
    let node = nodes
        .iter()
        .find(|n| id_at(&up, &n.addr) == holder)
        .expect("its member");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    loop {
        let list = ok(&node.weir(d, &["stream", "list"]));
        let low = list
            .lines()
            .find_map(|l| l.strip_prefix("q5@1.Counts__1\tseq "))
            .and_then(|range| range.split("..").next()?.parse::<u64>().ok());
        if low.is_some_and(|l| l > 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica's member (member {holder}) never collected its copy of Counts__1:\n{list}\n{}",
            String::from_utf8_lossy(&node.weir(d, &["job", "status", "q5", "--json"]).stdout)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nodes.remove(victim).kill9();
    std::fs::remove_dir_all(d.join(["d1", "d2", "d3"][victim])).expect("delete its disk");
    let partial = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).unwrap_or_default();
    assert!(partial.len() < want.len(), "lost mid-run");
    until(
        d,
        &nodes[0],
        "every vertex finished on a survivor",
        |s: &Value| {
            let v = vertices(s, q);
            assert!(
                v.iter().all(|(_, _, state)| state != "failed"),
                "{q}: a vertex failed: {v:?}"
            );
            v.len() >= total
                && v.iter()
                    .all(|(m, _, state)| *m != lost && state == "finished")
        },
    );
    let got = finished_output(d, &nodes[0], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output after losing member {lost} differs from weir run's"
    );
    // The lost member's replicated vertices ran on where their replicas
    // were: none started again from a snapshot.
    let logs = member_logs(d);
    let promoted: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.split("(their member went), running on: ").nth(1))
        .filter_map(|l| l.split(" job=").next())
        .flat_map(|l| l.split(", "))
        .map(str::trim)
        .collect();
    assert!(
        !promoted.is_empty() && promoted.iter().all(|v| replicated(v)),
        "{q}: no replica ran on as its vertex: {promoted:?}\n{logs}"
    );
}

/// A deploy to a replicated UDF reducer (each of its six copies runs on
/// two members) switches both instances of each copy at one position: the
/// replica stops until its vertex has made the switch past it, then makes
/// it where the vertex recorded it. Then the loss of a member with its
/// disk moves the copies it ran to their replicas, already switched, and
/// every row still comes from the version its copy ran at that row,
/// exactly once. (Without the replica following, it never switches, and
/// the rows it writes after the loss are v1's.)
#[test]
fn a_deploy_to_a_replicated_stage_switches_each_instance_where_its_vertex_did() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = three_with(d, &[], "2s");
    let (want, _) = run_tally(d, &nodes[0], " WITH REPLICATE 2");
    let v2 = udf_component("tally_v2").display().to_string();
    change(d, &nodes[1], &["deploy", &v2]);
    // Each copy's two instances show the switch, at one position.
    let switched = |s: &Value| {
        let mut at: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for v in s["vertices"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or_default();
            if name.starts_with("tally__p") && !v["switched_at"].is_null() {
                at.entry(name.to_string())
                    .or_default()
                    .push(v["switched_at"].clone());
            }
        }
        at
    };
    let s = job_status(d, &nodes[0], "tally", |s| {
        let at = switched(s);
        at.len() == 6 && at.values().all(|i| i.len() == 2)
    });
    for (copy, at) in switched(&s) {
        assert_eq!(
            at[0],
            at[1],
            "{copy}: its instances switched apart: {s}\n{}",
            logs_above(d)
        );
    }
    nodes.remove(2).kill9();
    std::fs::remove_dir_all(d.join("d3")).expect("delete its disk");
    super::cluster_patch::tally_finished(d, &nodes[0], std::time::Duration::from_secs(240));
    same_rows_by_version(d, &want, &["v1", "v2"]);
}

/// A follower that cannot follow its vertex (made to by the test hook
/// `WEIR_TEST_DIVERGE_FILE`, which hands it a switch where it has read
/// past) fails without writing what its vertex did not, and is dropped:
/// its member says why, and the job runs on and writes what `weir run`
/// writes. (Without the drop, the failed replica fails the job.)
#[test]
fn a_follower_that_cannot_follow_is_dropped_and_the_job_runs_on() {
    let dir = cluster();
    let d = dir.path();
    let hook = d.join("diverge");
    let path = hook.display().to_string();
    let nodes = three_with(d, &[("WEIR_TEST_DIVERGE_FILE", &path)], "2s");
    let script = |generator: &str| {
        write(
            d,
            "tally.wsql",
            &format!(
                "Bid = INPUT NEXMARK BID ({generator});\n\
                 sales = SELECT date_time AS ts, CAST(bidder % 50 AS VARCHAR) AS user, price AS amount FROM Bid;\n\
                 TallyV1 = COMPONENT \"{}\" WITH (factor = 3, poison = 777);\n\
                 tally = REDUCE sales ON user USING TallyV1 WITH REPLICATE 2;\n\
                 OUTPUT tally TO \"out/tally.jsonl\";\n",
                udf_component("tally_v1").display()
            ),
        )
    };
    script("events => 12000, rate => 1000");
    let want = offline(d, "tally");
    script("events => 12000, rate => 1000, pace => 1");
    submit(d, &nodes[0], "tally");
    job_status(d, &nodes[1], "tally", |s| {
        s["vertices"].as_array().is_some_and(|vs| {
            vs.iter().any(|v| {
                v["name"] == "tally__p1" && v["role"] == "stage replica" && v["state"] == "running"
            })
        })
    });
    std::fs::write(&hook, "tally__p1").expect("the hook's file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !member_logs(d).contains("a follower here failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "no follower failed within 30 s:\n{}",
            logs_above(d)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::remove_file(&hook).expect("remove the hook's file");
    let logs = member_logs(d);
    assert!(
        logs.contains("which this instance passed") && logs.contains("copy=tally__p1"),
        "{logs}"
    );
    // Once dropped, the failed replica is no longer among the job's
    // vertices.
    job_status(d, &nodes[0], "tally", |s| {
        s["vertices"]
            .as_array()
            .is_some_and(|vs| vs.iter().all(|v| v["state"] != "failed"))
    });
    let got = finished_output(d, &nodes[0], "tally", |s| s["state"] != "running");
    assert!(got == want, "the tally differs from weir run's");
}

/// A copy of a replicated stage made slow on its member (the test hook
/// `WEIR_TEST_SLOW_FILE`: 30 ms per input entry there) falls far behind its
/// peers: it gets no straggler's duplicate but moves to its replica, which
/// keeps up and runs on as the copy (the coordinator says so). Then a
/// deploy and the loss of a member with its disk: every row still comes
/// from the version its copy ran at that row, exactly once.
#[test]
fn a_slow_replicated_copy_moves_to_its_replica_and_a_deploy_and_a_loss_keep_every_row() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = super::cluster_jobs::three_slowable(d, "2s");
    let up = until(d, &nodes[0], "members listed", |s| members(s).len() == 3);
    // A minute of bids: the copy falls behind, moves, and the deploy
    // lands while bids still come, however loaded the machine.
    let (want, _) = super::cluster_patch::run_tally_of(d, &nodes[0], " WITH REPLICATE 2", 60_000);
    let copy_in = |s: &Value| {
        (0..3).find_map(|i| {
            let me = id_at(&up, &nodes[i].addr);
            let m = members(s).iter().find(|m| m["id"] == me)?;
            m["vertices"].as_array()?.iter().find_map(|v| {
                let n = v["vertex"].as_str()?;
                (v["job"] == "tally" && n.starts_with("tally__p") && v["replica"] == false)
                    .then(|| (i + 1, n.to_string()))
            })
        })
    };
    let s = until(d, &nodes[0], "a copy listed", |s| copy_in(s).is_some());
    let (at, copy) = copy_in(&s).expect("a copy");
    let slow_member = id_at(&up, &nodes[at - 1].addr);
    std::fs::write(d.join(format!("slow-d{at}")), format!("{copy} 30")).expect("slow");
    // Far behind (a straggler has over 256 entries to read) for the
    // coordinator's three checks a second apart, it moves to its replica.
    super::cluster::until_within(
        d,
        &nodes[0],
        "the slow copy moved to its replica",
        std::time::Duration::from_secs(90),
        |s| {
            members(s).iter().any(|m| {
                m["id"] != slow_member
                    && m["vertices"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v["vertex"] == copy.as_str() && v["replica"] == false)
            })
        },
    );
    let logs = member_logs(d);
    assert!(
        logs.lines()
            .any(|l| l.contains("it moves to its replica, which keeps up")
                && l.contains(&format!("vertex={copy}"))),
        "the coordinator did not say the copy moved: {}",
        logs_above(d)
    );
    assert!(
        !logs.contains("it gets a duplicate"),
        "a replicated copy got a straggler's duplicate: {}",
        logs_above(d)
    );
    std::fs::remove_file(d.join(format!("slow-d{at}"))).expect("fast");
    let v2 = udf_component("tally_v2").display().to_string();
    change(d, &nodes[1], &["deploy", &v2]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    nodes.remove(2).kill9();
    std::fs::remove_dir_all(d.join("d3")).expect("delete its disk");
    super::cluster_patch::tally_finished(d, &nodes[0], std::time::Duration::from_secs(240));
    same_rows_by_version(d, &want, &["v1", "v2"]);
}
