//! Hot patches while a member is stalled (`kill -STOP`): a change reaches
//! copies that moved off the stalled member, resumed behind what readers
//! elsewhere had already copied of their earlier instances, and each makes
//! it only where no reader, nor a reader's reader, read the version before
//! it. The output is checked row by row against `weir run`'s.

use std::path::Path;

use serde_json::Value;

use weir::testkit::udf_component;

use super::cluster::{id_at, logs_above, members, until, until_within};
use super::cluster_jobs::{job_status, three_with, vertices};
use super::cluster_patch::{Rows, deploys, run_tally, same_rows_by_version, tally_finished};
use super::node::{Node, ok, write};
use super::stderr;

/// A deploy written while a member is stalled (`kill -STOP`): its copies
/// of the stage never take it there; they move to their backups when the
/// member is declared lost, and the member is then killed with its disk.
/// A backup's copy of a moved copy's output had fallen behind the copy the
/// member running the stage's union had read (a test hook holds backups'
/// copies back), so the moved copy, resumed from its backup and replaying
/// slowly (another hook), stands behind what that member already read of
/// it without the change. It makes the change only past that: every row
/// still comes from the version its copy ran there, exactly once. (Made
/// where the change reached it, the union's member would go on from the
/// new version's rows as if they followed the old one's: wrong totals.)
#[test]
fn a_change_queued_for_a_stalled_members_copies_is_made_past_what_readers_elsewhere_copied() {
    change_while_a_member_is_stalled(Then::Lost);
}

/// The same, with the stalled member running on (`kill -CONT`) once its
/// copies moved: until it hears that they did, its copies write on, on
/// the version before the change, into its streams. Back, it empties
/// its copies of those streams before anything there reads them again,
/// so a vertex that moves back there later reads the new writer's rows.
#[test]
fn a_stalled_member_that_runs_on_after_its_copies_moved_keeps_none_of_their_stale_rows() {
    change_while_a_member_is_stalled(Then::RunsOn);
}

/// What becomes of the stalled member once its copies moved.
enum Then {
    /// Killed, its disk deleted.
    Lost,
    /// It runs on from where it stood.
    RunsOn,
}

/// A deploy while a member is stalled, its copies moved to backups whose
/// copies of their output lag what the union's member read; the member is
/// then killed with its disk, or runs on.
fn change_while_a_member_is_stalled(then: Then) {
    let dir = super::node::cluster();
    let d = dir.path();
    let Stalling {
        mut nodes,
        want,
        up,
        s,
        listed,
    } = stalling(d);
    // The member of the union that reads the copies.
    let union = listed
        .iter()
        .find(|v| v["name"] == "tally")
        .and_then(|v| v["member"].as_u64())
        .expect("the union's member");
    // A member besides the union's and the coordinator's (the deploy is
    // written while it is stalled) with a copy backed up off the union's.
    let coordinator = up["coordinator"].as_u64().expect("a coordinator");
    let stalled = listed
        .iter()
        .filter(|v| v["name"].as_str().is_some_and(|n| n.starts_with("tally__p")))
        .filter_map(|v| {
            let name = v["name"].as_str()?.to_string();
            Some((name, v["member"].as_u64()?, v["backed_up_on"].as_u64()?))
        })
        .find(|(_, m, b)| *m != union && *m != coordinator && *b != union)
        .unwrap_or_else(|| {
            panic!("no copy off the union's and the coordinator's members backed up off the union's: {s}")
        });
    let ids: Vec<u64> = nodes.iter().map(|n| id_at(&up, &n.addr)).collect();
    let at = |id: u64| ids.iter().position(|i| *i == id).expect("a node");
    let (copy, stalled, _) = stalled;
    let moved: Vec<String> = listed
        .iter()
        .filter(|v| v["member"].as_u64() == Some(stalled))
        .filter_map(|v| v["name"].as_str())
        .filter(|n| n.starts_with("tally__p"))
        .map(str::to_string)
        .collect();
    let (i, via) = (at(stalled), at(union));
    // The union's member reads on for a while; where it moves, the copy
    // replays slowly: the deploy reaches it before it has rewritten what
    // the union's member read.
    stall_and_deploy(d, &nodes, i, &copy, via);
    std::fs::remove_file(d.join("slow")).expect("the copy runs at speed again");
    until_within(
        d,
        &nodes[via],
        "the stalled member's copies run elsewhere",
        std::time::Duration::from_secs(60),
        |s| {
            let v = vertices(s, "tally");
            v.iter()
                .filter(|(_, n, _)| n.starts_with("tally__p"))
                .count()
                == 6
                && v.iter().all(|(m, _, _)| *m != stalled)
        },
    );
    std::fs::remove_file(d.join(PAUSE)).expect("let the backups' copies go on");
    match then {
        Then::Lost => {
            lose_with_disk(d, &mut nodes, i);
        }
        Then::RunsOn => nodes[i].resume(),
    }
    every_copy_deployed_once(d, &nodes[0], &want);
    if let Then::RunsOn = then {
        // What the stalled member holds of the streams of its copies that
        // moved is what their new members wrote there.
        let log = std::fs::read_to_string(d.join(format!("d{}.log", i + 1))).expect("its log");
        assert!(
            log.contains("was declared lost while it ran"),
            "the stalled member's log does not say it acted on its loss:\n{log}"
        );
        let s = job_status(d, &nodes[0], "tally", |_| true);
        for copy in &moved {
            let now = s["vertices"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == copy.as_str())
                .and_then(|v| v["member"].as_u64())
                .unwrap_or_else(|| panic!("{copy}'s member: {s}"));
            same_entries(d, &nodes[i], &nodes[at(now)], copy);
        }
    }
}

/// `(name, low, next)` of the job stream of vertex `vertex` on `node`.
fn job_stream(d: &Path, node: &Node, vertex: &str) -> (String, u64, u64) {
    let list = ok(&node.weir(d, &["stream", "list"]));
    super::cluster::stream_spans(&list)
        .find(|(name, ..)| name.starts_with("tally@") && name.ends_with(&format!(".{vertex}")))
        .map(|(name, low, next)| (name.to_string(), low, next))
        .unwrap_or_else(|| panic!("no stream of {vertex} on {}:\n{list}", node.addr))
}

/// Asserts that every entry `stale` holds of the stream of vertex `copy`
/// is the entry `writer` holds at that seq.
fn same_entries(d: &Path, stale: &Node, writer: &Node, copy: &str) {
    // Collection may move a low between the listing and the read: list
    // again then.
    for _ in 0..5 {
        let (name, low, next) = job_stream(d, stale, copy);
        let (_, their_low, their_next) = job_stream(d, writer, copy);
        let from = low.max(their_low);
        if from >= next {
            return;
        }
        assert!(
            next <= their_next,
            "{name}: the stalled member holds seq {low}..{next}, its writer only up to {their_next}"
        );
        let read = |node: &Node| {
            let out = node.weir(d, &["stream", "read", &name, "--from", &from.to_string()]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let (Some(held), Some(written)) = (read(stale), read(writer)) else {
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        };
        assert!(
            written.starts_with(&held),
            "{name} from seq {from}: the stalled member holds other rows than the member that writes it now\n--- stalled member:\n{held}\n--- writer:\n{written}\n{}",
            logs_above(d)
        );
        return;
    }
    panic!("{copy}: its stream could not be read on both members");
}

/// A deploy written while the member running the stage's union, and
/// copies it merges, is stalled, the sink that reads the union running on
/// another member. The union and the copies move to their backups, whose
/// copies of their output lag what the sink's member had copied of the
/// union (a test hook holds backups' copies back): the union resumes
/// behind what the sink read, and a copy it merges resumes behind what
/// the union's earlier instance read of it, replaying slowly (another
/// hook). Until the union has written again as far as the sink read, the
/// copies make no change: every row still comes from the version its copy
/// ran there, exactly once. (A copy switching where the deploy reached it
/// would have the union write, past what the sink read, totals of a run
/// with the new version where the sink's rows had the old one.)
#[test]
fn a_change_waits_while_a_moved_union_writes_again_what_its_sink_read() {
    let dir = super::node::cluster();
    let d = dir.path();
    let Stalling {
        mut nodes,
        want,
        up,
        s,
        listed,
    } = stalling(d);
    let member_of = |name: &str| {
        listed
            .iter()
            .find(|v| v["name"] == name || v["vertex"] == name)
            .and_then(|v| v["member"].as_u64())
    };
    let union = member_of("tally").expect("the union's member");
    let sink = member_of("sink0").expect("the sink's member");
    assert_ne!(union, sink, "the union and its sink run on one member: {s}");
    let copies: Vec<(String, u64)> = listed
        .iter()
        .filter_map(|v| {
            let name = v["name"].as_str().filter(|n| n.starts_with("tally__p"))?;
            Some((name.to_string(), v["member"].as_u64()?))
        })
        .collect();
    let slowed = copies
        .iter()
        .find(|(_, m)| *m == union)
        .map(|(c, _)| c.clone())
        .unwrap_or_else(|| panic!("no copy runs on the union's member: {s}"));
    let via = copies
        .iter()
        .map(|(_, m)| *m)
        .find(|m| *m != union)
        .expect("a copy off the union's member");
    let ids: Vec<u64> = nodes.iter().map(|n| id_at(&up, &n.addr)).collect();
    let at = |id: u64| ids.iter().position(|i| *i == id).expect("a node");
    let (i, via) = (at(union), at(via));
    // The sink's member copies on for a while; where it moves, the copy
    // replays slowly: the deploy reaches it before it has rewritten what
    // the union's earlier instance read.
    stall_and_deploy(d, &nodes, i, &slowed, via);
    until_within(
        d,
        &nodes[via],
        "the stalled member's vertices run elsewhere",
        std::time::Duration::from_secs(60),
        |s| {
            let v = vertices(s, "tally");
            v.iter()
                .filter(|(_, n, _)| n.starts_with("tally__p") || n == "tally")
                .count()
                == 7
                && v.iter().all(|(m, _, _)| *m != union)
        },
    );
    std::fs::remove_file(d.join(PAUSE)).expect("let the backups' copies go on");
    std::fs::remove_file(d.join("slow")).expect("the copy runs at speed again");
    lose_with_disk(d, &mut nodes, i);
    every_copy_deployed_once(d, &nodes[0], &want);
}

/// The file whose existence holds backups' copies back (the test hook
/// `WEIR_TEST_BACKUP_COPY_PAUSE_FILE`), in the test's directory.
const PAUSE: &str = "pause-backup-copies";

/// Three members whose backups' copies and vertices a test can hold back
/// (`PAUSE`, and `slow` naming a vertex and its delay per entry), running
/// the tally, with what the cluster lists of them and of its vertices.
struct Stalling {
    nodes: Vec<Node>,
    want: Rows,
    up: Value,
    s: Value,
    listed: Vec<Value>,
}

fn stalling(d: &Path) -> Stalling {
    let pause = d.join(PAUSE).display().to_string();
    let slow = d.join("slow").display().to_string();
    let env = [
        ("WEIR_TEST_BACKUP_COPY_PAUSE_FILE", pause.as_str()),
        ("WEIR_TEST_SLOW_FILE", slow.as_str()),
    ];
    // Long enough for the deploy to be written before the member is lost.
    let nodes = three_with(d, &env, "3s");
    let (want, _) = run_tally(d, &nodes[0], "");
    let up = until(d, &nodes[0], "members listed", |s| members(s).len() == 3);
    let s = job_status(d, &nodes[0], "tally", |_| true);
    let listed = s["vertices"].as_array().cloned().unwrap_or_default();
    Stalling {
        nodes,
        want,
        up,
        s,
        listed,
    }
}

/// Holds the backups' copies back, and after 2 s stalls `nodes[i]`
/// (`kill -STOP`); has vertex `slowed` replay slowly wherever it moves;
/// deploys v2 to the tally through `nodes[via]`.
fn stall_and_deploy(d: &Path, nodes: &[Node], i: usize, slowed: &str, via: usize) {
    write(d, PAUSE, "");
    std::thread::sleep(std::time::Duration::from_secs(2));
    nodes[i].pause();
    write(d, "slow", &format!("{slowed} 10"));
    let v2 = udf_component("tally_v2").display().to_string();
    let answer = nodes[via].weir(
        d,
        &["udf", "deploy", &v2, "--job", "tally", "--stage", "tally"],
    );
    assert!(answer.status.success(), "the deploy: {}", stderr(&answer));
}

/// Kills `nodes[i]` (`kill -9`) and deletes its data directory.
fn lose_with_disk(d: &Path, nodes: &mut Vec<Node>, i: usize) {
    nodes.remove(i).kill9();
    std::fs::remove_dir_all(d.join(format!("d{}", i + 1))).expect("delete its disk");
}

/// Once the tally finished: every copy took the deploy, and each row
/// comes from the version its copy ran there (v1, then v2), exactly once.
fn every_copy_deployed_once(d: &Path, node: &Node, want: &Rows) {
    tally_finished(d, node, std::time::Duration::from_secs(240));
    let deployed = deploys(d, node).len();
    assert_eq!(deployed, 6, "every copy took the deploy{}", logs_above(d));
    same_rows_by_version(d, want, &["v1", "v2"]);
}
