//! The loss of a member, process and disk, in a cluster of real `weir node`
//! processes: the vertices it ran move to the members that backed them up
//! and resume from the snapshots those hold; the output is byte for byte
//! what `weir run` writes.

use serde_json::Value;

use super::cluster::{id_at, logs_above, member_logs, members, until};
use super::cluster_jobs::{
    finished_output, job_status, offline, submit, three, until_vertices, vertices,
};
use super::node::{cluster, ok, write};
use weir::testkit::udf_component;

/// Whether a `weir stream list` shows a stream of q5 collected below some seq.
fn collected(list: &str) -> bool {
    list.lines().any(|line| {
        let mut cols = line.split('\t');
        let (Some(name), Some(range)) = (cols.next(), cols.next()) else {
            return false;
        };
        let low = range
            .trim_start_matches("seq ")
            .split("..")
            .next()
            .and_then(|l| l.parse::<u64>().ok());
        name.starts_with("q5@") && low.is_some_and(|l| l > 0)
    })
}

/// Runs Nexmark q5 at parallelism 6 over three members and, mid-run,
/// kills with `kill -9` the coordinator's member (`coordinator`) or
/// another, and deletes its data directory.
fn lose_a_member_mid_run(coordinator: bool) {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = three(d);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let leader = up["coordinator"].as_u64().expect("coordinator");
    let victim = nodes
        .iter()
        .position(|n| (id_at(&up, &n.addr) == leader) == coordinator)
        .expect("a member to lose");
    let lost = id_at(&up, &nodes[victim].addr);
    let q = "q5";
    // 20 s of input: the wait for a backup's delta below may take most of
    // 10 s on a loaded machine, and the loss must come before the end.
    super::nexmark_queries::example(d, q, "events => 200000, rate => 10000, pace => 1");
    let want = offline(d, q);
    let per_member = submit(d, &nodes[(victim + 1) % 3], q);
    assert_eq!(per_member.len(), 3, "the lost member runs a part");
    let total: usize = per_member.iter().sum();
    let started = std::time::Instant::now();
    // The backups of the member's stateful vertices take the keys that
    // changed since the snapshot they hold, not the whole state each time.
    job_status(d, &nodes[0], q, |s| {
        s["vertices"].as_array().into_iter().flatten().any(|v| {
            v["member"] == lost
                && v["backup"]["whole"] == false
                && v["backup"]["since"].is_u64()
                && v["backup"]["keys"].as_u64().is_some_and(|k| k > 0)
        })
    });
    std::thread::sleep(std::time::Duration::from_millis(2500).saturating_sub(started.elapsed()));
    nodes.remove(victim).kill9();
    std::fs::remove_dir_all(d.join(["d1", "d2", "d3"][victim])).expect("delete its disk");
    let partial = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).unwrap_or_default();
    assert!(partial.len() < want.len(), "lost mid-run");
    // Every vertex of the job runs on a survivor, and they finish (what
    // is left of the input takes up to 20 s).
    let done = until_vertices(d, &nodes[0], q, std::time::Duration::from_secs(90), |v| {
        v.len() == total
            && v.iter()
                .all(|(m, _, state)| *m != lost && state == "finished")
    });
    assert!(
        members(&done)
            .iter()
            .any(|m| m["id"] == lost && m["health"] == "lost"),
        "{done}"
    );
    // The survivors collect their streams as the backups store snapshots:
    // a stream is kept only from what a backed-up snapshot still needs, not
    // from its start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut lists = Vec::new();
    while !lists.iter().any(|list: &String| collected(list)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no job stream collected within 15 s:\n{}",
            lists.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        lists = nodes
            .iter()
            .map(|node| ok(&node.weir(d, &["stream", "list"])))
            .collect();
    }
    let got = finished_output(d, &nodes[1], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output after losing member {lost} (coordinator: {coordinator}) differs from weir run's"
    );
    // The survivors' own vertices ran on while the lost member's moved in:
    // none was stopped and started again from its snapshot.
    let logs = member_logs(d);
    let stayed: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.split("vertices moved: ").nth(1))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        stayed.iter().any(|n| *n > 0),
        "{q}: the survivors' vertices did not run on through the move: {stayed:?}\n{logs}"
    );
}

/// A member lost (`kill -9`) before the backup of some of its vertices
/// stored any snapshot of them (that backup's rounds are slowed to one
/// every ten minutes through the test hook `WEIR_TEST_BACKUP_EVERY_MS`):
/// they start over on that backup from their inputs' start, which it kept
/// meanwhile, though the vertices it runs itself read on past it; the
/// output is byte for byte what `weir run` writes.
#[test]
fn vertices_lost_before_their_backup_stored_a_snapshot_start_over_there() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = super::cluster_jobs::three_slowable_with(d, "1s", Some((0, "600000")));
    let up = until(d, &nodes[0], "members listed", |s| members(s).len() == 3);
    let slow = id_at(&up, &nodes[0].addr);
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 300000, rate => 20000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[0], q);
    // A member running a vertex the slowed one backs up, once the job is
    // well under way (the vertices read past their start).
    let started = std::time::Instant::now();
    let s =
        job_status(d, &nodes[0], q, |s| {
            s["vertices"].as_array().into_iter().flatten().any(|v| {
                v["backed_up_on"] == slow && v["member"] != slow && v["state"] == "running"
            })
        });
    let lost = s["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["backed_up_on"] == slow && v["member"] != slow)
        .and_then(|v| v["member"].as_u64())
        .expect("a member to lose");
    std::thread::sleep(std::time::Duration::from_secs(5).saturating_sub(started.elapsed()));
    let victim = nodes
        .iter()
        .position(|n| id_at(&up, &n.addr) == lost)
        .expect("its node");
    nodes.remove(victim).kill9();
    let patience = std::time::Duration::from_secs(120);
    super::cluster_jobs::job_status_within(d, &nodes[0], q, patience, |s| s["state"] != "running");
    let got = finished_output(d, &nodes[0], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output after vertices started over on their backup differs from weir run's"
    );
}

/// A second loss right after a first. A member is killed (`kill -9`); its
/// vertices move to their backup's member and get new backups on the
/// third member, whose backup rounds are slowed to one every ten minutes
/// (the test hook `WEIR_TEST_BACKUP_EVERY_MS`), so those never become
/// ready. The first member starts again (it runs nothing), and then the
/// backup's member is killed: no member that is up holds a snapshot of the
/// vertices that moved there, so they wait, and the job's status says so,
/// naming the lost member and what to do. Started again on its data
/// directory, that member resumes them, and the output is byte for byte
/// what `weir run` writes.
#[test]
fn vertices_whose_member_and_backup_are_lost_wait_and_resume_when_it_returns() {
    let dir = cluster();
    let d = dir.path();
    let timeout = "1s";
    let mut nodes = super::cluster_jobs::three_slowable_with(d, timeout, Some((2, "600000")));
    let up = until(d, &nodes[0], "members listed", |s| members(s).len() == 3);
    let slow = id_at(&up, &nodes[2].addr);
    let data: Vec<(u64, String)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (id_at(&up, &n.addr), format!("d{}", i + 1)))
        .collect();
    let data_of = |id: u64| {
        data.iter()
            .find(|(m, _)| *m == id)
            .map(|(_, dir)| dir.clone())
            .expect("its data directory")
    };
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 600000, rate => 20000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[2], q);
    // A member whose vertices another than the slowed one backs up.
    let pair = |v: &Value| Some((v["member"].as_u64()?, v["backed_up_on"].as_u64()?));
    let usable = |v: &Value| pair(v).filter(|(m, b)| *m != slow && *b != slow);
    let s = job_status(d, &nodes[2], q, |s| {
        s["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["state"] == "running" && usable(v).is_some())
    });
    let (first, second) = s["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(usable)
        .expect("a member and its backup");
    let node_of = |nodes: &[super::node::Node], id: u64| {
        nodes
            .iter()
            .position(|n| id_at(&up, &n.addr) == id)
            .expect("its node")
    };
    // Its backups hold snapshots by now.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let dead = nodes.remove(node_of(&nodes, first));
    let (first_addr, first_data) = (dead.addr.clone(), data_of(first));
    dead.kill9();
    until(d, &nodes[0], "its vertices moved", |s| {
        members(s)
            .iter()
            .any(|m| m["id"] == first && m["health"] == "lost")
            && vertices(s, q).iter().all(|(member, ..)| *member != first)
    });
    let back = super::cluster::member_with(d, &first_data, &first_addr, None, &[], timeout);
    nodes.push(back.expect("the first member restarts"));
    until(d, &nodes[0], "the first member back", |s| {
        members(s)
            .iter()
            .any(|m| m["id"] == first && m["health"] == "up")
    });
    let dead = nodes.remove(node_of(&nodes, second));
    let (second_addr, second_data) = (dead.addr.clone(), data_of(second));
    dead.kill9();
    let waiting = format!("at {second_addr} is lost, and these vertices wait for it");
    let s = job_status(d, &nodes[0], q, |s| s.to_string().contains(&waiting));
    assert!(
        s["vertices"].as_array().into_iter().flatten().any(|v| {
            v["member"] == second
                && v["state"] == "unreachable"
                && v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("start it again on its data directory"))
        }),
        "{s}"
    );
    let back = super::cluster::member_with(d, &second_data, &second_addr, None, &[], timeout);
    nodes.push(back.expect("the second member restarts"));
    let patience = std::time::Duration::from_secs(120);
    super::cluster_jobs::job_status_within(d, &nodes[0], q, patience, |s| s["state"] != "running");
    let got = finished_output(d, &nodes[0], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output after a member and its vertices' backup were lost differs from weir run's"
    );
}

/// A member that is not the coordinator's, lost with its disk mid-run.
#[test]
fn a_member_lost_with_its_disk_mid_run_changes_no_output_byte() {
    lose_a_member_mid_run(false);
}

/// The coordinator's member lost with its disk mid-run: a new coordinator
/// moves its vertices.
#[test]
fn the_coordinators_member_lost_with_its_disk_mid_run_changes_no_output_byte() {
    lose_a_member_mid_run(true);
}

/// A job whose input could not be read again the same way on another member
/// (a followed file) is refused by the cluster, naming the input; nothing
/// of it is placed.
#[test]
fn inputs_a_member_cannot_read_again_are_refused_in_a_cluster() {
    let dir = cluster();
    let d = dir.path();
    let nodes = three(d);
    std::fs::write(d.join("items.jsonl"), "{\"ts\": 1, \"id\": 1}\n").expect("items");
    let source = "path = \"items.jsonl\"\nfollow = true\nevent_time = \"ts\"\nschema = { ts = \"int64\", id = \"int64\" }";
    let job = format!(
        "name = \"tail\"\n\n[[sources]]\nname = \"items\"\n{source}\n\n[[sinks]]\ninput = \"items\"\npath = \"out/tail.jsonl\"\n"
    );
    std::fs::write(d.join("tail.toml"), job).expect("job file");
    let out = nodes[1].weir(d, &["job", "submit", "tail.toml"]);
    let err = super::stderr(&out);
    assert!(
        !out.status.success() && err.contains("input `items` follows a file"),
        "{err}"
    );
    let status = nodes[2].weir(d, &["job", "status", "tail"]);
    assert!(!status.status.success(), "the job was placed");
}

/// A UDF stage's log is backed up with its output: after the member that
/// ran a copy of it is lost with its disk, `weir udf logs` of the copy,
/// which runs on its backup now, still shows the lines it printed on the
/// lost member before its last backed-up snapshot. (Without the copy of
/// the log, the moved copy's log starts at that snapshot.)
#[test]
fn a_udfs_log_survives_the_loss_of_its_member() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = three(d);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let lost = id_at(&up, &nodes[2].addr);
    write(
        d,
        "echo.wsql",
        &format!(
            "Bid = INPUT NEXMARK BID (events => 1500, rate => 150, pace => 1);\n\
             items = SELECT auction AS id FROM Bid;\n\
             Chatty = COMPONENT \"{}\";\n\
             echo = PROCESS items USING Chatty;\n\
             OUTPUT echo TO \"out/echo.jsonl\";\n",
            udf_component("chatty").display()
        ),
    );
    submit(d, &nodes[0], "echo");
    // A copy of the stage on the member to lose, with a few snapshots
    // sent to its backup.
    let on_lost = |s: &Value| -> Option<String> {
        s["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|v| {
                (v["member"] == lost
                    && v["module"].is_string()
                    && v["state"] == "running"
                    && v["backup"]["snapshot"].as_u64().is_some_and(|n| n >= 3))
                .then(|| v["name"].as_str().unwrap_or_default().to_string())
            })
    };
    let s = job_status(d, &nodes[0], "echo", |s| on_lost(s).is_some());
    let copy = on_lost(&s).expect("a copy on the member to lose");
    let logs = |node: &super::node::Node| {
        ok(&node.weir(d, &["udf", "logs", "--job", "echo", "--stage", &copy]))
    };
    let before = logs(&nodes[2]);
    let first = before
        .lines()
        .find(|l| l.contains("[stdout] row "))
        .unwrap_or_else(|| panic!("{copy} printed nothing: {before}"))
        .to_string();
    // The backup's copy of the log fills as the log grows.
    std::thread::sleep(std::time::Duration::from_secs(1));
    nodes.remove(2).kill9();
    std::fs::remove_dir_all(d.join("d3")).expect("delete its disk");
    job_status(d, &nodes[0], "echo", |s| {
        s["vertices"].as_array().into_iter().flatten().any(|v| {
            v["name"] == copy.as_str()
                && v["member"].as_u64().is_some_and(|m| m != lost)
                && v["state"] != "failed"
        })
    });
    let after = logs(&nodes[0]);
    assert!(
        after.contains(&first),
        "{copy}: its log on its new member lacks `{first}`:\n{after}\n{}",
        logs_above(d)
    );
}

/// Each member in turn stalls (`kill -STOP`) mid-run past the heartbeat
/// timeout, the coordinator's included, and then runs on (`kill -CONT`)
/// from where it stood, as a machine that froze does: the others declare
/// it lost and move its vertices to their backups while it still holds
/// them; running again, it hears where they run now, stops its own, and
/// is a member again. Its stale vertices may write on for a moment into
/// its streams and the shared output file; the readers and the sink go by
/// where the vertices run now, so the output is byte for byte what `weir
/// run` writes.
#[test]
fn members_stalled_past_the_timeout_one_after_another_change_no_output_byte() {
    let dir = cluster();
    let d = dir.path();
    let nodes = three(d);
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 240000, rate => 20000, pace => 1");
    let want = offline(d, q);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let per_member = submit(d, &nodes[0], q);
    assert_eq!(per_member.len(), 3, "every member runs a part");
    let total: usize = per_member.iter().sum();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    for stalled in 0..3 {
        let id = id_at(&up, &nodes[stalled].addr);
        let watcher = &nodes[(stalled + 1) % 3];
        nodes[stalled].pause();
        until(d, watcher, "the stalled member is lost", |s| {
            members(s)
                .iter()
                .any(|m| m["id"] == id && m["health"] == "lost")
        });
        nodes[stalled].resume();
        until(d, watcher, "the stalled member is up again", |s| {
            members(s).iter().all(|m| m["health"] == "up")
        });
    }
    let partial = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).unwrap_or_default();
    assert!(partial.len() < want.len(), "stalled mid-run");
    // Asked of any member, the job lists each vertex once, where it runs
    // now, while a member that stalled may still be stopping the ones
    // that moved away from it (besides the duplicates of those moving to
    // even the members out, marked so).
    for node in &nodes {
        let status = job_status(d, node, q, |_| true);
        let names: Vec<&str> = status["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| {
                v["role"]
                    .as_str()
                    .is_some_and(|r| !r.ends_with(" duplicate"))
            })
            .filter_map(|v| v["name"].as_str())
            .collect();
        let once: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert!(
            names.len() == total && once.len() == total,
            "{q}: {total} vertices, each once: {status}"
        );
    }
    let got = finished_output(d, &nodes[0], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output after three stalls differs from weir run's\n{}",
        logs_above(d)
    );
    // Each stalled member's log says its runtime was held up, and for
    // about how long: more than the timeout its peers waited.
    for data in ["d1", "d2", "d3"] {
        let log = std::fs::read_to_string(d.join(format!("{data}.log"))).expect("a member's log");
        let longest = log
            .lines()
            .filter(|l| l.contains("the node's runtime was held up"))
            .filter_map(|l| l.split("late_ms=").nth(1)?.trim().parse::<u64>().ok())
            .max();
        assert!(
            longest.is_some_and(|ms| ms >= 300),
            "{data}: no hold-up of the heartbeat timeout or more in its log:\n{log}"
        );
    }
}

/// The member that writes q1's sink killed with `kill -9` mid-run: the
/// sink resumes on its backup from the snapshot stored there, cuts the
/// file back to that snapshot's length and writes on. The member then
/// restarts on its disk, where its own checkpoint of the sink stands
/// further than where the sink resumed: that checkpoint no longer counts,
/// nothing the sink wrote is cut again, and the output is byte for byte
/// `weir run`'s.
#[test]
fn the_sinks_member_killed_and_restarted_after_its_sink_moved_changes_no_output_byte() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = three(d);
    let q = "q1";
    super::nexmark_queries::example(d, q, "events => 200000, rate => 10000, pace => 1");
    let want = offline(d, q);
    let per_member = submit(d, &nodes[0], q);
    let total: usize = per_member.iter().sum();
    let out = d.join(format!("out/{q}.jsonl"));
    let size = || std::fs::metadata(&out).map_or(0, |m| m.len());
    let sink_on = |s: &Value| {
        vertices(s, q)
            .into_iter()
            .find(|(_, v, state)| v.ends_with(".jsonl") && state != "failed")
            .map(|(m, _, _)| m)
    };
    // The sink runs and has written; its backup stores a snapshot of it
    // every 300 ms.
    let placed = job_status(d, &nodes[0], q, |s| {
        size() > 0
            && s["vertices"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["vertex"] == "sink0" && v["state"] == "running")
    });
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let on = placed["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["vertex"] == "sink0")
        .and_then(|v| v["member"].as_u64())
        .expect("the sink's member");
    let up = until(d, &nodes[0], "the members", |s| members(s).len() == 3);
    let victim = nodes
        .iter()
        .position(|n| id_at(&up, &n.addr) == on)
        .expect("the sink's node");
    let data = ["d1", "d2", "d3"][victim];
    let dead = nodes.remove(victim);
    let addr = dead.addr.clone();
    dead.kill9();
    let at_kill = size();
    assert!(at_kill < want.len() as u64, "killed mid-run");
    // The sink runs on a survivor and writes past where it stood.
    super::cluster::until_within(
        d,
        &nodes[0],
        "the sink writes on a survivor",
        std::time::Duration::from_secs(60),
        |s: &Value| sink_on(s).is_some_and(|m| m != on) && size() > at_kill,
    );
    nodes.insert(
        victim,
        super::cluster::member(d, data, &addr, None).expect("the member restarts"),
    );
    let patience = std::time::Duration::from_secs(120);
    until_vertices(d, &nodes[(victim + 1) % 3], q, patience, |v| {
        v.len() == total && v.iter().all(|(_, _, state)| state == "finished")
    });
    let got = std::fs::read_to_string(&out).expect("output");
    assert!(
        got == want,
        "{q}: the output after the sink's member was killed and restarted differs from weir run's\n{}",
        logs_above(d)
    );
}
