//! Hot patches of a job spread over a cluster of real `weir node`
//! processes: a deploy or rollback asked of any member reaches every copy
//! of the stage on every member, and a replay or the logs of one copy come
//! from where it runs; each copy switches at a CTI of its own
//! input and records where in its timeline, which survives `kill -9` of its
//! member. The output is checked row by row against `weir run`'s: each row
//! comes from the version its copy ran at that row, exactly once.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use weir::testkit::udf_component;

use super::cluster::{id_at, logs_above, member, member_logs, members, until, until_within};
use super::cluster_jobs::{job_status, submit, three, three_with, until_vertices, vertices};
use super::node::{Node, ok, write};
use super::patch::version_of;
use super::{stderr, weir};

/// A tally per user of Nexmark bids (50 users), run as copies of a `REDUCE`
/// (with `clause` after it, such as ` WITH REPLICATE 2`).
fn script(d: &Path, generator: &str, clause: &str) {
    write(
        d,
        "tally.wsql",
        &format!(
            "Bid = INPUT NEXMARK BID ({generator});\n\
             sales = SELECT date_time AS ts, CAST(bidder % 50 AS VARCHAR) AS user, price AS amount FROM Bid;\n\
             TallyV1 = COMPONENT \"{}\" WITH (factor = 3, poison = 777);\n\
             tally = REDUCE sales ON user USING TallyV1{clause};\n\
             OUTPUT tally TO \"out/tally.jsonl\";\n",
            udf_component("tally_v1").display()
        ),
    );
}

/// `(user, count) -> (total, version)` of every output row.
pub(crate) type Rows = BTreeMap<(String, i64), (i64, String)>;

pub(crate) fn rows(d: &Path) -> Rows {
    let text = std::fs::read_to_string(d.join("out/tally.jsonl")).expect("the sink's file");
    let mut all = Rows::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let key = (
            v["user"].as_str().unwrap_or_default().to_string(),
            v["count"].as_i64().unwrap_or(-1),
        );
        let value = (
            v["total"].as_i64().unwrap_or(-1),
            v["version"].as_str().unwrap_or_default().to_string(),
        );
        assert!(
            all.insert(key.clone(), value).is_none(),
            "row {key:?} twice"
        );
    }
    all
}

/// Where each copy took a change, as a deploy or rollback answer lists
/// them: copy -> input position.
fn positions(answer: &str) -> BTreeMap<String, u64> {
    answer
        .lines()
        .filter_map(|l| {
            let copy = l.split("stage `").nth(1)?.split('`').next()?;
            let at = l.split("in effect from input position ").nth(1)?;
            Some((copy.to_string(), at.split(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// What v1 alone writes (each row's amount is its total's step), then the
/// tally (its stage with `clause`) submitted through `node` at parallelism
/// 6, paced, once every copy runs (each member fetched and compiled the
/// module); returns the offline rows and how many vertices the job has.
pub(crate) fn run_tally(d: &Path, node: &Node, clause: &str) -> (Rows, usize) {
    run_tally_of(d, node, clause, 30_000)
}

/// [`run_tally`] over `events` bids (1,000 a second on the node).
pub(crate) fn run_tally_of(d: &Path, node: &Node, clause: &str, events: u64) -> (Rows, usize) {
    script(d, &format!("events => {events}, rate => 1000"), clause);
    let out = weir(&["run", "tally.wsql", "--quiet", "--parallelism", "6"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = rows(d);
    std::fs::remove_dir_all(d.join("out")).expect("remove the offline output");
    script(
        d,
        &format!("events => {events}, rate => 1000, pace => 1"),
        clause,
    );
    let per_member = submit(d, node, "tally");
    assert_eq!(per_member.len(), 3, "every member runs a part");
    job_status(d, node, "tally", |s| {
        let copies = s["vertices"].as_array().map_or(0, |vs| {
            vs.iter()
                .filter(|v| {
                    v["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("tally__p"))
                        && v["state"] == "running"
                })
                .count()
        });
        copies >= 6
    });
    (want, per_member.iter().sum())
}

/// `weir udf ARGS --job tally --stage tally` through `node`.
pub(crate) fn change(d: &Path, node: &Node, args: &[&str]) -> String {
    let mut all = vec!["udf"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--job", "tally", "--stage", "tally"]);
    ok(&node.weir(d, &all))
}

/// A deploy asked of one member and a rollback of another reach all six
/// copies over three members; a member killed with `kill -9` after them
/// and restarted on its disk keeps its copies' timelines; every output row
/// comes from the version its copy ran there, exactly once.
#[test]
fn a_deploy_and_a_rollback_through_any_member_reach_every_copy_across_kill_9() {
    let dir = super::node::cluster();
    let d = dir.path();
    let mut nodes = three(d);
    let (want, total) = run_tally(d, &nodes[0], "");

    let v2 = udf_component("tally_v2").display().to_string();
    let deployed = change(d, &nodes[1], &["deploy", &v2]);
    assert!(
        deployed.contains("stage `tally` runs as 6 rVertices"),
        "{deployed}"
    );
    let rolled = change(d, &nodes[2], &["rollback"]);
    assert!(
        rolled.contains("stage `tally` runs as 6 rVertices"),
        "{rolled}"
    );
    // Where the answers saw a copy switch (a copy behind its input may
    // switch after the answer, which says it is queued).
    let (at_deploy, at_rollback) = (positions(&deployed), positions(&rolled));
    // A replay of one copy, asked of a member that does not run it, runs
    // on the member that does (the copy's input and state are there). A
    // copy behind its input makes the rollback at its next CTI: every copy
    // runs v1 again first.
    let v1 = version_of("tally_v1");
    let status = job_status(d, &nodes[0], "tally", |s| {
        s["vertices"].as_array().is_some_and(|vs| {
            vs.iter()
                .filter(|v| {
                    v["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("tally__p"))
                })
                .all(|v| {
                    v["module"]
                        .as_str()
                        .is_some_and(|m| v1.starts_with(m) || m.starts_with(&v1))
                })
        })
    });
    let (copy, on) = status["vertices"]
        .as_array()
        .and_then(|vs| {
            vs.iter().find_map(|v| {
                let name = v["name"].as_str().filter(|n| n.starts_with("tally__p"))?;
                Some((name.to_string(), v["member"].as_u64()?))
            })
        })
        .expect("a copy");
    let up = until(d, &nodes[0], "members listed", |s| members(s).len() == 3);
    let asked = nodes
        .iter()
        .find(|n| id_at(&up, &n.addr) != on)
        .expect("a member that does not run the copy");
    let out = ok(&asked.weir(
        d,
        &[
            "udf", "replay", &v2, "--job", "tally", "--stage", &copy, "--json",
        ],
    ));
    let replay: Value = serde_json::from_str(&out).expect("the replay report is JSON");
    assert_eq!(replay["stage"], copy.as_str(), "{out}");
    assert_eq!(
        replay["candidate"],
        version_of("tally_v2").as_str(),
        "{out}"
    );
    assert_eq!(
        replay["running"],
        version_of("tally_v1").as_str(),
        "rolled back: {out}"
    );
    assert!(
        replay["to"].as_u64().is_some_and(|to| to > 0) && replay["checkpoint"].as_u64() > Some(0),
        "the replay saw the copy's input and checkpoint: {out}"
    );

    // So do its logs: the member asked passes them on from the member that
    // runs the copy.
    let out = asked.weir(d, &["udf", "logs", "--job", "tally", "--stage", &copy]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Bad input: a shadow run of the version the copies run again is
    // refused, naming it, before anything runs.
    let v1 = udf_component("tally_v1").display().to_string();
    let out = nodes[0].weir(
        d,
        &[
            "udf", "deploy", &v1, "--job", "tally", "--stage", "tally", "--shadow", "10",
        ],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("the stage already runs it"),
        "{}",
        stderr(&out)
    );

    let dead = nodes.remove(1);
    let addr = dead.addr.clone();
    dead.kill9();
    nodes.insert(
        1,
        member(d, "d2", &addr, None).expect("the member restarts"),
    );
    let patience = std::time::Duration::from_secs(240);
    until_vertices(d, &nodes[0], "tally", patience, |v| {
        v.len() == total && v.iter().all(|(_, _, state)| state == "finished")
    });
    // Bad input: a deploy to a job whose every copy finished is refused at
    // once, as on one node.
    let out = nodes[2].weir(
        d,
        &["udf", "deploy", &v2, "--job", "tally", "--stage", "tally"],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("the job has finished"),
        "{}",
        stderr(&out)
    );

    // The stage's history, asked of any member, gathers every copy's
    // timeline from the member that runs it: both changes, where the
    // answers placed them.
    for node in &nodes {
        let out = ok(&node.weir(
            d,
            &[
                "udf", "history", "--job", "tally", "--stage", "tally", "--json",
            ],
        ));
        let h: Value = serde_json::from_str(&out).expect("history is JSON");
        let mut copies: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for e in h.as_array().expect("a list") {
            copies
                .entry(e["copy"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push((
                    e["why"].as_str().unwrap_or_default().to_string(),
                    e["position"].as_u64().unwrap_or(u64::MAX),
                ));
        }
        assert_eq!(copies.len(), 6, "every copy, asked of {}: {out}", node.addr);
        for (copy, entries) in &copies {
            let whys: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
            assert_eq!(
                whys,
                ["submitted with the job", "deploy", "rollback"],
                "{copy}, asked of {}: {entries:?}",
                node.addr
            );
            assert!(entries[1].1 <= entries[2].1, "{copy}: {entries:?}");
            for (answer, at) in [(&at_deploy, entries[1].1), (&at_rollback, entries[2].1)] {
                if let Some(said) = answer.get(copy) {
                    assert_eq!(*said, at, "{copy}: where the answer said it switched");
                }
            }
        }
    }

    // Row by row: per user, v1 then v2 then v1.
    same_rows_by_version(d, &want, &["v1", "v2", "v1"]);
}

/// Each row of the tally's output in `d` against `want` (what v1 alone
/// writes), as [`rows_by_version`] checks them. On a failure the members'
/// logs are printed, with the rows of the user it names.
pub(crate) fn same_rows_by_version(d: &Path, want: &Rows, order: &[&str]) {
    let got = rows(d);
    let checked = std::panic::catch_unwind(|| rows_by_version(&got, want, order));
    if let Err(why) = checked {
        let message = why.downcast_ref::<String>().cloned().unwrap_or_default();
        let user = message
            .split("user ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        if let Some(user) = user {
            eprintln!("user {user}'s rows: (count) got total, version; want total");
            for ((u, count), (total, version)) in &got {
                if u == user {
                    let wanted = want.get(&(u.clone(), *count)).map(|w| w.0);
                    eprintln!("({count}) {total} {version}; {wanted:?}");
                }
            }
        }
        eprintln!("{}", logs_above(d));
        std::panic::resume_unwind(why);
    }
}

/// Each output row against `want` (what v1 alone writes): the same rows;
/// each total steps by the row's amount (v1) or three times it (v2); each
/// user's versions, in order, a run of `order`.
fn rows_by_version(got: &Rows, want: &Rows, order: &[&str]) {
    let keys = |r: &Rows| r.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "the rows (user, count) differ");
    let mut previous: Option<(&String, i64, i64)> = None;
    let mut versions: BTreeMap<&String, Vec<&str>> = BTreeMap::new();
    for ((user, count), (total, version)) in got {
        let (want_total, _) = &want[&(user.clone(), *count)];
        let (prev_want, prev_got) = match previous {
            Some((u, w, g)) if u == user => (w, g),
            _ => (0, 0),
        };
        let factor = if version == "v2" { 3 } else { 1 };
        assert_eq!(
            total - prev_got,
            factor * (want_total - prev_want),
            "user {user} row {count} ({version})"
        );
        previous = Some((user, *want_total, *total));
        let seq = versions.entry(user).or_default();
        if seq.last() != Some(&version.as_str()) {
            seq.push(version);
        }
    }
    let both = versions.values().filter(|s| s.contains(&"v2")).count();
    assert!(both > 0, "some rows ran on v2: {versions:?}");
    // A user whose first bid came after the deploy (Nexmark's bidders are
    // the persons so far, so a high id bids late) starts on v2.
    for (user, seq) in &versions {
        assert!(
            order.windows(seq.len()).any(|w| w == seq.as_slice()),
            "user {user}: versions {seq:?}"
        );
    }
}

/// A deploy across three members followed at once by the loss of one of
/// them with its disk: the copies that move to the survivors resume with
/// the switch each made, at the position it made it (recorded with the
/// coordinator before anything past it left the member), so every row
/// still comes from the version its copy ran there, exactly once.
#[test]
fn a_deploy_followed_by_the_loss_of_a_member_and_its_disk_keeps_every_switch() {
    let dir = super::node::cluster();
    let d = dir.path();
    // Backups that fall seconds behind: the lost member's copies switched
    // after the snapshots their backups hold. A heartbeat timeout that a
    // loaded machine does not miss: no member is thought lost but the one
    // killed.
    let backups_behind = [("WEIR_TEST_BACKUP_EVERY_MS", "4000")];
    let mut nodes = three_with(d, &backups_behind, "2s");
    let (want, total) = run_tally(d, &nodes[0], "");
    let v2 = udf_component("tally_v2").display().to_string();
    change(d, &nodes[0], &["deploy", &v2]);
    // Once every copy switched, at once: before the backups store
    // snapshots that hold the switches.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let at_deploy = loop {
        let switched = deploys(d, &nodes[0]);
        if switched.len() == 6 {
            break switched;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every copy switched within 60 s: {switched:?}\n{}",
            logs_above(d)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    nodes.remove(2).kill9();
    std::fs::remove_dir_all(d.join("d3")).expect("delete its disk");
    let patience = std::time::Duration::from_secs(240);
    until_within(d, &nodes[0], "every vertex finished", patience, |s| {
        let v = vertices(s, "tally");
        if v.iter().any(|(_, _, state)| state == "failed") {
            let out = nodes[0].weir(d, &["job", "status", "tally", "--json"]);
            panic!(
                "a vertex failed: {v:?}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        v.len() == total && v.iter().all(|(_, _, state)| state == "finished")
    });
    // Where each copy switched, asked of a survivor: where it had.
    assert_eq!(deploys(d, &nodes[1]), at_deploy);
    same_rows_by_version(d, &want, &["v1", "v2"]);
}

/// Where each copy of stage `tally` took a deploy, as its timeline says
/// (asked of `node`): copy -> input position. Panics on a copy that took
/// it twice.
pub(crate) fn deploys(d: &Path, node: &Node) -> BTreeMap<String, u64> {
    let out = ok(&node.weir(
        d,
        &[
            "udf", "history", "--job", "tally", "--stage", "tally", "--json",
        ],
    ));
    let h: Value = serde_json::from_str(&out).expect("history is JSON");
    let mut switched = BTreeMap::new();
    for e in h.as_array().expect("a list") {
        if e["why"] == "deploy" {
            let copy = e["copy"].as_str().unwrap_or_default().to_string();
            let at = e["position"].as_u64().unwrap_or(u64::MAX);
            assert!(
                switched.insert(copy, at).is_none(),
                "a copy switched twice: {out}"
            );
        }
    }
    switched
}

/// Changes to two stages of one job, one after the other: each reaches
/// every copy of its own stage (a copy counts the changes to other stages
/// as passing it by, not as changes it missed).
#[test]
fn changes_to_two_stages_of_a_job_each_reach_their_copies() {
    let dir = super::node::cluster();
    let d = dir.path();
    // A heartbeat timeout that a loaded machine does not miss: nothing
    // here is about a member lost.
    let nodes = three_with(d, &[], "2s");
    write(
        d,
        "two.wsql",
        &format!(
            "Bid = INPUT NEXMARK BID (events => 30000, rate => 1000, pace => 1);\n\
             sales = SELECT date_time AS ts, CAST(bidder % 50 AS VARCHAR) AS user, price AS amount FROM Bid;\n\
             TallyV1 = COMPONENT \"{}\" WITH (factor = 3, poison = 777);\n\
             first = REDUCE sales ON user USING TallyV1;\n\
             second = REDUCE sales ON user USING TallyV1;\n\
             OUTPUT first TO \"out/first.jsonl\";\n\
             OUTPUT second TO \"out/second.jsonl\";\n",
            udf_component("tally_v1").display()
        ),
    );
    submit(d, &nodes[0], "two");
    job_status(d, &nodes[0], "two", |s| {
        let running = s["vertices"].as_array().map_or(0, |vs| {
            vs.iter()
                .filter(|v| v["role"] == "stage" && v["state"] == "running")
                .filter(|v| v["name"].as_str().is_some_and(|n| n.contains("__p")))
                .count()
        });
        running >= 12
    });
    for (stage, node) in [("first", &nodes[1]), ("second", &nodes[2])] {
        let args = [
            "job",
            "filter",
            "add",
            "--job",
            "two",
            "--stage",
            stage,
            "amount = 1",
        ];
        ok(&node.weir(d, &args));
    }
    for stage in ["first", "second"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let args = ["udf", "history", "--job", "two", "--stage", stage, "--json"];
            let out = ok(&nodes[0].weir(d, &args));
            let h: Value = serde_json::from_str(&out).expect("history is JSON");
            let filtered = h.as_array().map_or(0, |list| {
                list.iter()
                    .filter(|e| {
                        e["why"]
                            .as_str()
                            .is_some_and(|w| w.starts_with("filter added"))
                    })
                    .count()
            });
            if filtered == 6 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "stage `{stage}`: {filtered} of 6 copies took its filter within 30 s: {out}\n{}",
                logs_above(d)
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// A deploy with a shadow run to a stage spread over three members runs
/// the new version next to each copy's, on the copy's last input rows, on
/// the member that runs the copy, and reports them summed; then every copy
/// switches, and every row comes from the version its copy ran there.
#[test]
fn a_deploy_with_a_shadow_run_shadows_every_copy_on_its_member_first() {
    let dir = super::node::cluster();
    let d = dir.path();
    // As above: nothing here is about a member lost.
    let nodes = three_with(d, &[], "2s");
    let (want, _) = run_tally(d, &nodes[0], "");
    let v2 = udf_component("tally_v2").display().to_string();
    let said = change(d, &nodes[1], &["deploy", &v2, "--shadow", "100000"]);
    // Six copies asked for 100000 rows each, and each ran on what its
    // input holds.
    let line = said
        .lines()
        .find(|l| l.starts_with("shadow run on the last "))
        .unwrap_or_else(|| panic!("no shadow report: {said}"));
    assert!(
        line.contains("(600000 asked; the input stream holds no more)"),
        "{line}"
    );
    let ran: u64 = line
        .trim_start_matches("shadow run on the last ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(ran > 0, "{line}");
    assert!(said.contains("stage `tally` runs as 6 rVertices"), "{said}");
    tally_finished(d, &nodes[0], std::time::Duration::from_secs(120));
    same_rows_by_version(d, &want, &["v1", "v2"]);
}

/// Waits up to `patience` until every vertex of job `tally` finished, as
/// `node` sees it; a failed vertex fails the test with the members' logs.
pub(crate) fn tally_finished(d: &Path, node: &Node, patience: std::time::Duration) {
    until_within(d, node, "every vertex finished", patience, |s| {
        let v = vertices(s, "tally");
        assert!(
            v.iter().all(|(_, _, state)| state != "failed"),
            "a vertex failed: {v:?}\n{}\nwhy, as the members logged it:\n{}",
            logs_above(d),
            member_logs(d)
                .lines()
                .filter(|l| l.contains(" failed: "))
                .collect::<Vec<_>>()
                .join("\n")
        );
        !v.is_empty() && v.iter().all(|(_, _, state)| state == "finished")
    });
}
