//! `weir node drain`: a member of a cluster of real `weir node` processes
//! hands every vertex it runs to the member that backs it up (a duplicate
//! there catches up beside it, then its readers switch), backs up nothing
//! more, and then stops without changing an output byte. A straggler gets
//! a duplicate the same way, and whichever catches up first stays.

use std::path::Path;

use serde_json::Value;

use super::cluster::{id_at, logs_above, member_logs, members, until, until_within};
use super::cluster_jobs::{finished_output, job_status_within, offline, submit, three, vertices};
use super::node::{Node, cluster, ok};
use super::stderr;

#[test]
fn a_drained_member_runs_nothing_and_stops_without_changing_an_output_byte() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = three(d);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 400000, rate => 20000, pace => 1");
    let want = offline(d, q);
    let per_member = submit(d, &nodes[0], q);
    assert_eq!(per_member.len(), 3, "every member runs a part");
    let total: usize = per_member.iter().sum();
    let drained = id_at(&up, &nodes[1].addr);

    // Bad input: a member that is not there; a client certificate.
    let out = nodes[0].weir(d, &["node", "drain", "9"]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("no member `9` in the cluster"),
        "{err}"
    );
    let out = nodes[0].weir(
        d,
        &[
            "node",
            "drain",
            &drained.to_string(),
            "--identity",
            "client",
        ],
    );
    assert!(!out.status.success(), "a client may not drain a member");

    // Mid-run, by its address through another member.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let said = ok(&nodes[2].weir(d, &["node", "drain", &nodes[1].addr]));
    assert!(
        said.contains(&format!("member {drained}: drained")) && said.contains("safe to stop"),
        "{said}"
    );
    let partial = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).unwrap_or_default();
    assert!(partial.len() < want.len(), "drained mid-run");
    // Safe to stop: every running vertex has a backup that holds a
    // snapshot of it, so the loss of any member now moves it at once.
    let table = ok(&nodes[0].weir(d, &["cluster", "status"]));
    assert!(
        !table.contains("would leave waiting") && !table.contains("(no snapshot yet)"),
        "{table}"
    );
    let s = until(d, &nodes[0], "the drained member shows it", |s: &Value| {
        members(s)
            .iter()
            .any(|m| m["id"] == drained && m["draining"] == true)
    });
    let m = members(&s)
        .iter()
        .find(|m| m["id"] == drained)
        .expect("the drained member");
    assert_eq!(m["health"], "up", "{m}");
    assert_eq!(m["placed"], 0, "{m}");
    assert_eq!(m["backs"], 0, "{m}");
    assert!(
        vertices(&s, q)
            .iter()
            .all(|(member, ..)| *member != drained),
        "{s}"
    );
    // Its vertices but the sink ran as duplicates on their backups until
    // each had caught up, then the readers switched to them.
    let logs = member_logs(d);
    let switched = logs.matches("the duplicate caught up").count();
    assert!(switched > 0, "no duplicate caught up:\n{logs}");
    // The readers that stopped pulling from the drained member gave up
    // connections under way: no member took that for a refusal.
    assert!(
        !logs.contains("refused a connection"),
        "a drain is no refused connection:\n{logs}"
    );
    // Safe to stop: the job finishes on the others, as weir run writes it.
    nodes.remove(1).stop();
    until(
        d,
        &nodes[0],
        "every vertex finished elsewhere",
        |s: &Value| {
            let v = vertices(s, q);
            assert!(
                v.iter().all(|(_, _, state)| state != "failed"),
                "{q}: a vertex failed: {v:?}"
            );
            v.len() == total && v.iter().all(|(_, _, state)| state == "finished")
        },
    );
    let got = finished_output(d, &nodes[1], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output with member {drained} drained mid-run differs from weir run's"
    );
}

/// A partition of q5's aggregate's input made slow on its member (through
/// the test hook `WEIR_TEST_SLOW_FILE`: each input entry takes 30 ms there)
/// falls far behind its peers: the coordinator gives it a duplicate on its
/// backup, which catches up first, and the partition moves there; the
/// output is byte for byte what `weir run` writes. Its old member copies
/// its stream from there for the aggregate's copies it runs, and collects
/// that copy as they read it: what it kept for other members' copies when
/// it wrote the stream holds nothing back.
#[test]
fn a_straggler_gets_a_duplicate_that_catches_up_and_takes_its_place() {
    let dir = cluster();
    let d = dir.path();
    // A 2 s heartbeat timeout: on a loaded machine the slowed member was
    // taken for lost at 300 ms, and its partition moved away as a loss.
    let nodes = super::cluster_jobs::three_slowable(d, "2s");
    let up = until(d, &nodes[0], "members listed", |s| members(s).len() == 3);
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 300000, rate => 20000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[0], q);
    // A partition on the first member, beside a copy of the aggregate
    // that reads it, once they run.
    let me = id_at(&up, &nodes[0].addr);
    let runs = |s: &Value, group: &str| {
        vertices(s, q)
            .into_iter()
            .find(|(m, v, state)| *m == me && v.starts_with(group) && state == "running")
            .map(|(_, v, _)| v)
    };
    let running = until(d, &nodes[0], "the job running", |s| {
        runs(s, "Counts__in0p").is_some() && runs(s, "Counts__p").is_some()
    });
    let slow = runs(&running, "Counts__in0p").expect("a partition on the first member");
    let moved = straggle_until(d, &nodes[0], &slow, |s| {
        vertices(s, q)
            .iter()
            .any(|(m, v, state)| *m != me && *v == slow && state != "starting")
            && !vertices(s, q)
                .iter()
                .any(|(m, v, _)| *m == me && *v == slow)
    });
    assert!(!vertices(&moved, q).is_empty());
    // The member may get a duplicate of it again, as members even out.
    std::fs::remove_file(d.join("slow-d1")).expect("the partition runs at speed");
    let span = || {
        let list = ok(&nodes[0].weir(d, &["stream", "list"]));
        let name = format!("{q}@1.{slow}");
        super::cluster::stream_spans(&list)
            .find(|(n, ..)| *n == name)
            .map(|(_, low, next)| (low, next))
            .unwrap_or_else(|| panic!("no copy of {slow} listed:\n{list}"))
    };
    let (_, moved_at) = span();
    let got = finished_output(d, &nodes[0], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output after the straggler moved differs from weir run's"
    );
    let logs = member_logs(d);
    assert!(
        logs.lines()
            .any(|l| l.contains("a straggler") && l.contains(&format!("vertex={slow}"))),
        "no straggler found:\n{logs}"
    );
    assert!(
        logs.lines().any(|l| l.contains("the duplicate caught up")
            && l.contains(&format!("vertex={slow}"))),
        "the duplicate did not take over:\n{logs}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (low, next) = span();
        if low >= moved_at {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first member keeps its copy of {slow} from seq {low} (of {next}), below where it ended when the partition moved ({moved_at})"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A straggler's partition moves to its duplicate, and its new member is
/// killed (`kill -9`) at once, before the member it left stored a snapshot
/// from there (that member's backup rounds are slowed to one every 4 s
/// through the test hook `WEIR_TEST_BACKUP_EVERY_MS`). The partition moves
/// back to the member it left, which resumes it from its own latest
/// snapshot, and the output is byte for byte what `weir run` writes.
#[test]
fn a_vertex_moved_to_its_duplicate_goes_back_when_its_new_member_is_lost_at_once() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = super::cluster_jobs::three_slowable_with(d, "2s", Some((0, "4000")));
    let up = until(d, &nodes[0], "members listed", |s| members(s).len() == 3);
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 600000, rate => 20000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[0], q);
    let me = id_at(&up, &nodes[0].addr);
    let running = until(
        d,
        &nodes[0],
        "a partition running on the first member",
        |s| {
            vertices(s, q).iter().any(|(m, v, state)| {
                *m == me && v.starts_with("Counts__in0p") && state == "running"
            })
        },
    );
    let slow = vertices(&running, q)
        .into_iter()
        .find(|(m, v, _)| *m == me && v.starts_with("Counts__in0p"))
        .map(|(_, v, _)| v)
        .expect("a partition on the first member");
    let moved = straggle_until(d, &nodes[0], &slow, |s| {
        vertices(s, q)
            .iter()
            .any(|(m, v, state)| *m != me && *v == slow && state != "starting")
    });
    std::fs::remove_file(d.join("slow-d1")).expect("the partition runs at speed");
    let to = vertices(&moved, q)
        .into_iter()
        .find(|(m, v, _)| *m != me && *v == slow)
        .map(|(m, ..)| m)
        .expect("its new member");
    let at = nodes
        .iter()
        .position(|n| id_at(&up, &n.addr) == to)
        .expect("the new member's node");
    nodes.remove(at).kill9();
    // The job runs 30 s; on a busy machine, longer.
    let patience = std::time::Duration::from_secs(120);
    job_status_within(d, &nodes[0], q, patience, |s| s["state"] != "running");
    let got = finished_output(d, &nodes[0], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output after the moved partition's new member was lost differs from weir run's"
    );
    let s = super::cluster_jobs::job_status(d, &nodes[0], q, |s| s["state"] != "running");
    let on = s["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == slow.as_str())
        .map(|v| v["member"].clone());
    assert!(
        on.is_some_and(|m| m == me),
        "{slow} is not back on the member it left: {s}"
    );
}

/// A member is drained mid-run and, while the vertices it backed up have
/// no ready backup yet, the member running one of them is killed (`kill
/// -9`) and its data directory deleted. The third member's backup rounds
/// are slowed to never store (the test hook `WEIR_TEST_BACKUP_EVERY_MS`),
/// so the new backups the drain gave stay not ready. The drained member
/// goes on backing up what it held a snapshot of until they are: the lost
/// member's vertices it had backed up move to it and resume from there,
/// and the output is byte for byte what `weir run` writes.
#[test]
fn a_drained_member_backs_up_until_new_backups_are_ready_and_a_loss_meanwhile_resumes_there() {
    let dir = cluster();
    let d = dir.path();
    let mut nodes = super::cluster_jobs::three_slowable_with(d, "1s", Some((2, "600000")));
    let up = until(d, &nodes[2], "members listed", |s| members(s).len() == 3);
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 600000, rate => 20000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[2], q);
    let ids = [id_at(&up, &nodes[0].addr), id_at(&up, &nodes[1].addr)];
    // A vertex on one of the first two members whose backup, the other,
    // holds a snapshot of it: that one is drained, the first is killed.
    let backed = |s: &Value| -> Option<(u64, u64)> {
        s["vertices"].as_array()?.iter().find_map(|v| {
            let (m, b) = (v["member"].as_u64()?, v["backed_up_on"].as_u64()?);
            let stored = v["backup"].is_object() && !v["role"].as_str()?.ends_with("duplicate");
            (ids.contains(&m) && ids.contains(&b) && m != b && stored).then_some((m, b))
        })
    };
    let patience = std::time::Duration::from_secs(30);
    let before = job_status_within(d, &nodes[2], q, patience, |s| backed(s).is_some());
    let (victim, drained) = backed(&before).expect("a vertex backed up");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let said = ok(&nodes[2].weir(d, &["node", "drain", &drained.to_string(), "--wait", "0s"]));
    assert!(
        said.contains(&format!("member {drained}: draining")),
        "{said}"
    );
    // Every vertex of the drained member moves (those the third member
    // backs up start over there); it still backs up the victim's vertex.
    let drained_out = until_within(
        d,
        &nodes[2],
        "the drained member runs nothing",
        std::time::Duration::from_secs(60),
        |s| {
            members(s)
                .iter()
                .any(|m| m["id"] == drained && m["placed"] == 0 && m["backs"].as_u64() > Some(0))
        },
    );
    let partial = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).unwrap_or_default();
    assert!(
        partial.len() < want.len(),
        "the run ended before the drain: {drained_out}"
    );
    // Not safe to stop yet, and the command that waits for it says why.
    let out = nodes[2].weir(d, &["node", "drain", &drained.to_string(), "--wait", "1s"]);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains(&format!("member {drained} still has 0 vertices placed"))
            && err.contains("until their new backups hold one"),
        "{err}"
    );
    let at = usize::from(victim != ids[0]);
    nodes.remove(at).kill9();
    std::fs::remove_dir_all(d.join(["d1", "d2"][at])).expect("delete its disk");
    // The job runs 30 s; on a busy machine, longer.
    let patience = std::time::Duration::from_secs(120);
    // The vertices that resumed on the drained member are backed up by
    // the third, which stores no snapshot: the status says that a loss of
    // the drained member now would leave them waiting.
    let exposed = |v: &Value| v["protected"] == false && v["state"] == "running";
    until_within(d, &nodes[1], "vertices shown unprotected", patience, |s| {
        members(s).iter().any(|m| {
            m["id"] == drained && m["vertices"].as_array().into_iter().flatten().any(exposed)
        })
    });
    let table = ok(&nodes[1].weir(d, &["cluster", "status"]));
    assert!(
        table.contains("(no snapshot yet)")
            && table.contains("a loss of their member now would leave waiting"),
        "{table}"
    );
    job_status_within(d, &nodes[1], q, patience, |s| s["state"] != "running");
    let got = finished_output(d, &nodes[1], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output with a member lost while another drained differs from weir run's"
    );
    let s = super::cluster_jobs::job_status(d, &nodes[1], q, |s| s["state"] != "running");
    let resumed = s["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["member"] == drained);
    assert!(resumed, "no vertex resumed on the drained member: {s}");
}

/// Draining the member that runs a job's sink: the sink gets a duplicate
/// on its backup like any vertex (it writes the same bytes at the same
/// offsets of the file), and moves there once that has caught up. The
/// file is never cut back (a sink started over from its backup's older
/// snapshot would cut it to that length and write the rest again), and
/// it ends as `weir run` writes it.
#[test]
fn draining_the_sinks_member_moves_the_sink_without_cutting_its_file() {
    let dir = cluster();
    let d = dir.path();
    // A timeout a busy machine keeps (the README's advice): a member
    // declared lost meanwhile would move the sink to its backup, which
    // cuts the file back to its snapshot's length, as a loss does.
    let nodes = super::cluster_jobs::three_with(d, &[], "1s");
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 100000, rate => 20000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[0], q);
    let s = super::cluster_jobs::job_status(d, &nodes[0], q, |s| {
        s["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["role"] == "sink" && v["state"] == "running")
    });
    let (_, drained, other) = sink_and_other(&s, &up, &nodes);
    // Watch the file's length through the drain.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (stop, path) = (stop.clone(), d.join(format!("out/{q}.jsonl")));
        std::thread::spawn(move || {
            let mut longest = 0;
            let mut cut = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                if len < longest && cut.is_none() {
                    cut = Some((longest, len));
                }
                longest = longest.max(len);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            cut
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let said = ok(&other.weir(d, &["node", "drain", &drained.addr]));
    assert!(said.contains("safe to stop"), "{said}");
    let got = finished_output(d, other, q, |s| s["state"] != "running");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let cut = watch.join().expect("the watcher");
    assert_eq!(cut, None, "the output file was cut back (longest, then)");
    assert!(
        got == want,
        "{q}: the output with the sink's member drained differs from weir run's"
    );
    let logs = member_logs(d);
    assert!(
        logs.lines()
            .any(|l| l.contains("the duplicate caught up") && l.contains("vertex=sink0")),
        "the sink did not move through a duplicate:\n{logs}"
    );
}

/// Draining a member once its job has finished: the duplicates of its
/// vertices (the sink's among them) read the little their backups'
/// snapshots left and finish at once, and a finished duplicate has
/// caught up: the drain ends, and the file stays as `weir run` writes it.
#[test]
fn a_member_of_a_finished_job_drains_and_its_file_stays() {
    let dir = cluster();
    let d = dir.path();
    let nodes = three(d);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let q = "q5";
    super::nexmark_queries::example(d, q, "events => 20000, rate => 20000");
    let want = offline(d, q);
    submit(d, &nodes[0], q);
    let got = finished_output(d, &nodes[0], q, |s| s["state"] == "finished");
    assert!(
        got == want,
        "{q}: the cluster's output differs from weir run's"
    );
    let s = super::cluster_jobs::job_status(d, &nodes[0], q, |_| true);
    let (sink_member, drained, other) = sink_and_other(&s, &up, &nodes);
    let said = ok(&other.weir(d, &["node", "drain", &drained.addr, "--wait", "60s"]));
    assert!(said.contains("safe to stop"), "{said}");
    // Once every member answers (a loaded one may not within the 2 s a
    // status waits for it).
    let s = super::cluster_jobs::job_status(d, other, q, |s| {
        s["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|v| v["state"] != "unreachable")
    });
    assert_eq!(s["state"], "finished", "{s}");
    assert!(
        s["vertices"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|v| v["member"].as_u64() != Some(sink_member)),
        "{s}"
    );
    let after = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).expect("output");
    assert!(after == want, "{q}: the drain changed the finished output");
}

/// A member that stalls mid-run until it is declared lost, then is killed
/// with `kill -9` and started again, runs nothing at first (its vertices
/// moved to their backups); it then becomes their backups' backup again
/// and vertices move back to it through duplicates, one catching up beside
/// each, from mid-run until the load is even, and the output is `weir
/// run`'s. The
/// copies it kept end where it stalled, below what their writers have
/// collected since: they go on where the duplicates read from.
#[test]
fn a_member_back_after_a_loss_gets_vertices_again_without_changing_an_output_byte() {
    let dir = cluster();
    let d = dir.path();
    // A timeout a busy machine keeps (the README's advice): the test is
    // of one loss; a second, while a vertex's new backup is not ready,
    // leaves it waiting (README, Not yet).
    let timeout = "1s";
    let mut nodes = super::cluster_jobs::three_with(d, &[], timeout);
    let up = until(d, &nodes[0], "a coordinator", |s| s["coordinator"].is_u64());
    let q = "q5";
    // Long enough (40 s) for the moves back to finish mid-run on a busy
    // machine.
    super::nexmark_queries::example(d, q, "events => 800000, rate => 20000, pace => 1");
    let want = offline(d, q);
    submit(d, &nodes[0], q);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let dead = nodes.pop().expect("a third node");
    let (addr, id) = (dead.addr.clone(), id_at(&up, &dead.addr));
    dead.pause();
    until(d, &nodes[0], "its vertices moved", |s| {
        members(s)
            .iter()
            .any(|m| m["id"] == id && m["health"] == "lost")
            && vertices(s, q).iter().all(|(member, ..)| *member != id)
    });
    // The job runs on without it: the writers collect past what its
    // copies hold.
    std::thread::sleep(std::time::Duration::from_secs(2));
    dead.kill9();
    let restarted = super::cluster::member_with(d, "d3", &addr, None, &[], timeout);
    nodes.push(restarted.expect("the member restarts"));
    // The first vertex moves back mid-run; the rest follow until the load
    // is even (on a busy machine, maybe only as the run ends).
    let back = |s: &Value| {
        members(s)
            .iter()
            .any(|m| m["id"] == id && m["placed"].as_u64() > Some(0))
    };
    let s = until_within(
        d,
        &nodes[0],
        "a vertex back on the member",
        std::time::Duration::from_secs(60),
        back,
    );
    let partial = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).unwrap_or_default();
    assert!(
        partial.len() < want.len(),
        "no vertex moved back before the end of the run: {s}\n{}",
        logs_above(d)
    );
    until_within(
        d,
        &nodes[0],
        "vertices back on the member until the load is even",
        std::time::Duration::from_secs(60),
        |s| {
            let placed: Vec<u64> = members(s)
                .iter()
                .filter_map(|m| m["placed"].as_u64())
                .collect();
            let (lo, hi) = (placed.iter().min(), placed.iter().max());
            back(s) && hi.zip(lo).is_some_and(|(h, l)| h - l <= 1)
        },
    );
    let patience = std::time::Duration::from_secs(120);
    job_status_within(d, &nodes[0], q, patience, |s| s["state"] != "running");
    let got = finished_output(d, &nodes[0], q, |s| s["state"] != "running");
    assert!(
        got == want,
        "{q}: the output with vertices moved back differs from weir run's"
    );
    let logs = member_logs(d);
    assert!(
        logs.contains("the duplicate caught up"),
        "no vertex moved back through a duplicate:\n{logs}"
    );
}

/// Slows partition `slow` on the first member (through the test hook's
/// file `slow-d1`: each input entry takes 30 ms there) until the status
/// through `node` shows it `moved`, for at most 40 s; returns that status.
fn straggle_until(d: &Path, node: &Node, slow: &str, moved: impl Fn(&Value) -> bool) -> Value {
    std::fs::write(d.join("slow-d1"), format!("{slow} 30")).expect("the hook's file");
    until_within(
        d,
        node,
        "the straggler moved to its duplicate's member",
        std::time::Duration::from_secs(40),
        moved,
    )
}

/// The member running the job's sink (from its status `s`), its node, and
/// another node; `up` is a cluster status naming the members' ids.
fn sink_and_other<'a>(s: &Value, up: &Value, nodes: &'a [Node]) -> (u64, &'a Node, &'a Node) {
    let sink_member = s["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["role"] == "sink")
        .and_then(|v| v["member"].as_u64())
        .expect("the sink's member");
    let on = |sink: bool| {
        nodes
            .iter()
            .find(|n| (id_at(up, &n.addr) == sink_member) == sink)
            .expect("a node")
    };
    (sink_member, on(true), on(false))
}
