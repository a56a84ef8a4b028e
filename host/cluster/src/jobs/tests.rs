//! Placement, backups, drains and changes of the coordinator's jobs.

use super::*;
use crate::metadata::{Command, Health, Member};
use proptest::prelude::*;

/// Members 1 to `n` up, joined at 127.0.0.1:700{id}.
fn members(n: u64) -> Metadata {
    let mut m = Metadata::default();
    for id in 1..=n {
        m.apply(&Command::Join {
            addr: format!("127.0.0.1:{}", 7000 + id),
            id: Some(id),
            nonce: id,
        });
    }
    m
}

/// Backup `member` of vertex `vertex` of job `j` (id 1) stored a snapshot
/// from the member that runs the vertex.
fn ready(m: &mut Metadata, vertex: &str, member: NodeId) {
    let acted = m.members.get(&member).map_or(0, |b| b.losses);
    m.apply(&Command::BackupReady {
        name: "j".into(),
        id: 1,
        vertices: vec![vertex.into()],
        member,
        acted,
        from: vec![runs_on(m, vertex)],
    });
}

/// The member that runs vertex `vertex` of job `j`, and how many times it
/// was lost: where a backup fetches the vertex's snapshot from.
fn runs_on(m: &Metadata, vertex: &str) -> (NodeId, u64) {
    let member = m.jobs["j"].placement[vertex];
    (member, m.members.get(&member).map_or(0, |x| x.losses))
}

/// Every backup of job `j` stored a snapshot.
fn all_ready(m: &mut Metadata) {
    for (v, b) in m.jobs["j"].backups.clone() {
        ready(m, &v, b);
    }
}

fn spec(name: &str, vertices: usize) -> JobSpec {
    JobSpec {
        name: name.into(),
        path: "/jobs/q.wsql".into(),
        text: String::new(),
        parallelism: 1,
        modules: BTreeMap::new(),
        origin: 1,
        vertices: (0..vertices).map(|v| format!("v{v}")).collect(),
        nonce: 0,
        replicate: BTreeMap::new(),
    }
}

proptest! {
    /// Every vertex lands on a member that is up, and the members' loads
    /// stay within one of each other.
    #[test]
    fn placement_is_balanced_over_the_members_that_are_up(
        health in proptest::collection::vec(any::<bool>(), 1..6),
        jobs in proptest::collection::vec(1usize..20, 1..5),
    ) {
        let mut m = Metadata::default();
        for (i, up) in health.iter().enumerate() {
            m.members.insert(i as NodeId + 1, Member {
                addr: format!("127.0.0.1:{}", 7001 + i),
                health: if *up { Health::Up } else { Health::Lost },
                nonce: 0,
                announced: 0,
                draining: false,
                losses: 0,
            });
        }
        let up: Vec<NodeId> = m.up().map(|(id, _)| id).collect();
        for (j, n) in jobs.iter().enumerate() {
            let reply = m.apply(&Command::SubmitJob(spec(&format!("j{j}"), *n)));
            if up.is_empty() {
                prop_assert!(matches!(reply, Reply::Refused(_)));
                continue;
            }
            prop_assert_eq!(reply, Reply::Submitted { id: j as u64 + 1 });
            let job = &m.jobs[&format!("j{j}")];
            prop_assert_eq!(job.placement.len(), *n);
            prop_assert!(job.placement.values().all(|p| up.contains(p)));
        }
        if !up.is_empty() {
            let load = m.load();
            let counts: Vec<usize> = up.iter().map(|id| load.get(id).copied().unwrap_or(0)).collect();
            let (lo, hi) = (counts.iter().min(), counts.iter().max());
            prop_assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{counts:?}");
        }
    }
}

proptest! {
    /// After members are lost, come back and are drained in any order,
    /// every vertex runs on a member that is up and not drained
    /// whenever its backup was such a member and ready, its backup is
    /// another such member whenever one is, and a vertex moves only to
    /// the member that backed it up and was ready.
    #[test]
    fn a_lost_or_drained_members_vertices_move_to_their_ready_backups(
        n in 2u64..6,
        vertices in 1usize..12,
        events in proptest::collection::vec((0u8..3, 1u64..6, any::<u16>()), 0..12),
    ) {
        let mut m = Metadata::default();
        for id in 1..=n {
            m.apply(&Command::Join { addr: format!("127.0.0.1:{}", 7000 + id), id: Some(id), nonce: id });
        }
        m.apply(&Command::SubmitJob(spec("j", vertices)));
        for (kind, id, ready) in events {
            // Some backups stored a snapshot (a stale one's word is ignored).
            let job = m.jobs["j"].clone();
            for (i, (v, b)) in job.backups.iter().enumerate() {
                if ready & (1 << (i % 16)) != 0 {
                    m.apply(&Command::BackupReady { name: "j".into(), id: 1, vertices: vec![v.clone()], member: *b, acted: 0, from: vec![runs_on(&m, v)] });
                }
            }
            m.apply(&Command::BackupReady { name: "j".into(), id: 1, vertices: vec!["v0".into()], member: 99, acted: 0, from: Vec::new() });
            let before = m.jobs["j"].clone();
            let id = (id - 1) % n + 1;
            // What the status calls protected is what moves at once when
            // its member is lost.
            let was_up = m.members[&id].health == Health::Up;
            let (up, alive): (Vec<NodeId>, Vec<NodeId>) =
                (m.placeable().collect(), m.up().map(|(id, _)| id).collect());
            let protected: BTreeSet<String> = before
                .placement
                .keys()
                .filter(|v| before.protected(v, &up, &alive))
                .cloned()
                .collect();
            m.apply(&match kind {
                0 => Command::Lost { id },
                1 => Command::Back { id },
                _ => Command::Drain { id },
            });
            let up: Vec<NodeId> = m.placeable().collect();
            let job = &m.jobs["j"];
            if kind == 0 && was_up {
                for (v, _) in before.placement.iter().filter(|(_, b)| **b == id) {
                    prop_assert_eq!(
                        job.placement[v] != id,
                        protected.contains(v),
                        "{} protected as {:?} before member {} was lost", v, before, id
                    );
                }
            }
            for (v, member) in &job.placement {
                // To its backup, or to the previous one (ready) while the
                // backup is not.
                if *member != before.placement[v] && before.handing.get(v) != Some(member) {
                    prop_assert_eq!(Some(member), before.backups.get(v), "{} moved", v);
                    prop_assert!(
                        before.ready.contains(v) || !before.snapshotted.contains(v),
                        "{} moved to a backup without its snapshot", v
                    );
                }
                if let Some(h) = job.handing.get(v) {
                    prop_assert!(*h != *member && job.backups.get(v) != Some(h) && !job.ready.contains(v), "{} handing {:?}", v, job);
                }
                prop_assert!(!job.ready.contains(v) || job.backups.contains_key(v));
                prop_assert!(job.ready.is_subset(&job.snapshotted));
                let backed = (before.ready.contains(v) || !before.snapshotted.contains(v))
                    && before.backups.get(v).is_some_and(|b| up.contains(b));
                // A drained member's vertex stays until its duplicate
                // on its backup has caught up.
                let duplicated = job.duplicates.get(v);
                prop_assert!(up.contains(member) || !backed || duplicated.is_some(), "{} stays on a lost or drained member", v);
                if let Some(d) = duplicated {
                    prop_assert!(up.contains(d) && job.backups.get(v) == Some(d));
                    // Or it moves to even out the load.
                    prop_assert!(job.moving.contains(v) || (m.members[member].draining && m.members[member].health == Health::Up));
                }
                match job.backups.get(v) {
                    Some(b) => prop_assert!(b != member && up.contains(b)),
                    None => prop_assert!(up.iter().all(|u| u == member)),
                }
            }
        }
    }
}

/// A drained member's sink gets a duplicate like any vertex (it writes
/// the same bytes at the same offsets of the file); if the drained member
/// is lost before a duplicate switched, the vertex moves to the
/// duplicate's member.
#[test]
fn a_drained_members_sink_gets_a_duplicate_and_its_loss_ends_the_duplicates() {
    let mut m = members(2);
    let mut job = spec("j", 0);
    job.vertices = vec!["src".into(), "sink0".into()];
    m.apply(&Command::SubmitJob(job));
    let drained = m.jobs["j"].placement["src"];
    let other = 3 - drained;
    m.jobs
        .get_mut("j")
        .unwrap()
        .placement
        .insert("sink0".into(), drained);
    m.jobs
        .get_mut("j")
        .unwrap()
        .backups
        .insert("sink0".into(), other);
    assert!(is_sink("sink0") && !is_sink("sinks") && !is_sink("sink"));
    assert_eq!(m.apply(&Command::Drain { id: drained }), Reply::Done);
    let job = &m.jobs["j"];
    assert_eq!(job.placement["sink0"], drained, "the sink runs on");
    assert_eq!(job.duplicates.get("sink0"), Some(&other));
    assert_eq!(job.placement["src"], drained, "the source runs on");
    assert_eq!(job.duplicates.get("src"), Some(&other));
    m.apply(&Command::Lost { id: drained });
    let job = &m.jobs["j"];
    assert_eq!(job.placement["src"], other);
    assert_eq!(job.placement["sink0"], other);
    assert!(job.duplicates.is_empty());
}

#[test]
fn a_drained_member_hands_each_vertex_to_its_backup_once_that_is_ready() {
    let mut m = members(3);
    m.apply(&Command::SubmitJob(spec("j", 6)));
    // A vertex whose state was never snapshotted moves at once; one
    // whose backup has not stored a snapshot yet waits for it.
    m.jobs.get_mut("j").unwrap().snapshotted = (0..6).map(|i| format!("v{i}")).collect();
    assert_eq!(m.apply(&Command::Drain { id: 2 }), Reply::Done);
    assert_eq!(m.apply(&Command::Drain { id: 2 }), Reply::Unchanged);
    let on_two: Vec<String> = m.jobs["j"].on(2).map(String::from).collect();
    assert_eq!(on_two.len(), 2, "nothing moves before its backup is ready");
    for v in &on_two {
        let backup = m.jobs["j"].backups[v];
        assert_ne!(backup, 2);
        m.apply(&Command::BackupReady {
            name: "j".into(),
            id: 1,
            vertices: vec![v.clone()],
            member: backup,
            acted: 0,
            from: vec![runs_on(&m, v)],
        });
        // A duplicate runs on the backup; the vertex moves there once
        // that member says it caught up, and only that member.
        assert_eq!(m.jobs["j"].placement[v], 2, "{v} runs on until switched");
        assert_eq!(m.jobs["j"].duplicates.get(v), Some(&backup));
        let switch = |member| Command::Switch {
            name: "j".into(),
            id: 1,
            vertex: v.clone(),
            member,
        };
        let other = (1..=3).find(|m| *m != 2 && *m != backup).unwrap_or(2);
        assert_eq!(m.apply(&switch(other)), Reply::Unchanged);
        assert_eq!(m.apply(&switch(backup)), Reply::Done);
        assert_eq!(m.jobs["j"].placement[v], backup, "{v} moved to its backup");
        assert!(m.jobs["j"].duplicates.is_empty());
    }
    let job = &m.jobs["j"];
    assert_eq!(job.on(2).count(), 0, "the drained member runs nothing");
    // It backs up what it holds a snapshot of until the new backups are.
    assert!(job.backed_by(2).count() > 0, "{job:?}");
    for (v, b) in job.backups.clone() {
        ready(&mut m, &v, b);
    }
    let job = &m.jobs["j"];
    assert_eq!(job.backed_by(2).count(), 0, "nor backs anything up");
    assert!(job.backups.iter().all(|(v, b)| *b != job.placement[v]));
    // Nothing new goes to it.
    m.apply(&Command::SubmitJob(spec("k", 4)));
    assert_eq!(m.jobs["k"].on(2).count(), 0);
    // Draining the last member that could take the work is refused.
    assert_eq!(m.apply(&Command::Drain { id: 1 }), Reply::Done);
    let refused = m.apply(&Command::Drain { id: 3 });
    assert!(
        matches!(&refused, Reply::Refused(why) if why.contains("no other member")),
        "{refused:?}"
    );
    let unknown = m.apply(&Command::Drain { id: 9 });
    assert!(matches!(&unknown, Reply::Refused(why) if why.contains("no member 9")));
    // A drained member that starts again takes work again.
    m.apply(&Command::Join {
        addr: "127.0.0.1:7002".into(),
        id: Some(2),
        nonce: 2,
    });
    assert!(!m.members[&2].draining);
    m.apply(&Command::SubmitJob(spec("l", 3)));
    assert!(m.jobs["l"].on(2).count() > 0);
}

#[test]
fn a_job_name_is_taken_until_the_job_is_cancelled() {
    let mut m = Metadata::default();
    m.apply(&Command::Join {
        addr: "127.0.0.1:7001".into(),
        id: Some(1),
        nonce: 0,
    });
    assert_eq!(
        m.apply(&Command::SubmitJob(spec("q", 3))),
        Reply::Submitted { id: 1 }
    );
    let again = m.apply(&Command::SubmitJob(spec("q", 3)));
    assert!(
        matches!(&again, Reply::Refused(why) if why.contains("already in the cluster (id 1)")),
        "{again:?}"
    );
    assert_eq!(
        m.apply(&Command::CancelJob { name: "q".into() }),
        Reply::Done
    );
    // A submit written twice (its answer was lost): one job, one id.
    let once = JobSpec {
        nonce: 77,
        ..spec("r", 2)
    };
    assert_eq!(
        m.apply(&Command::SubmitJob(once.clone())),
        Reply::Submitted { id: 2 }
    );
    assert_eq!(
        m.apply(&Command::SubmitJob(once)),
        Reply::Submitted { id: 2 }
    );
    assert_eq!(
        m.apply(&Command::CancelJob { name: "r".into() }),
        Reply::Done
    );
    assert_eq!(
        m.apply(&Command::SubmitJob(spec("q", 3))),
        Reply::Submitted { id: 3 }
    );
    assert_eq!(m.jobs["q"].on(1).count(), 3);
}

/// Changes to a job's stages keep the order they were written in; the
/// same change written again (its answer was lost) keeps its index; a
/// change to a job the cluster does not run is refused.
#[test]
fn stage_changes_are_indexed_in_order_once_each() {
    let mut m = Metadata::default();
    m.apply(&Command::Join {
        addr: "127.0.0.1:7001".into(),
        id: Some(1),
        nonce: 1,
    });
    assert_eq!(
        m.apply(&Command::SubmitJob(spec("j", 3))),
        Reply::Submitted { id: 1 }
    );
    let change = |nonce: u64, change: StageChange| Command::PatchJob {
        name: "j".into(),
        patch: PatchRequest {
            stage: "s".into(),
            change,
            origin: 1,
            nonce,
        },
    };
    let deploy = StageChange::Deploy {
        version: "ab".repeat(32),
    };
    let back = StageChange::Rollback { to: None };
    assert_eq!(
        m.apply(&change(7, deploy.clone())),
        Reply::Patched { index: 0 }
    );
    assert_eq!(
        m.apply(&change(8, back.clone())),
        Reply::Patched { index: 1 }
    );
    assert_eq!(
        m.apply(&change(7, deploy.clone())),
        Reply::Patched { index: 0 }
    );
    let changes: Vec<&StageChange> = m.jobs["j"].patches.iter().map(|p| &p.change).collect();
    assert_eq!(changes, [&deploy, &back]);
    let unknown = Command::PatchJob {
        name: "nope".into(),
        patch: m.jobs["j"].patches[0].clone(),
    };
    assert!(matches!(m.apply(&unknown), Reply::Refused(why) if why.contains("no job `nope`")));
}

/// A copy's timeline is recorded only from the member it runs on, only
/// as it grows; a timeline that differs from the recorded one where
/// both have changes is refused, saying where.
#[test]
fn a_copy_timeline_grows_only_from_its_member() {
    use weir_core::patch::{Change, Patch};
    let mut m = Metadata::default();
    for id in [1, 2] {
        m.apply(&Command::Join {
            addr: format!("127.0.0.1:700{id}"),
            id: Some(id),
            nonce: id,
        });
    }
    m.apply(&Command::SubmitJob(spec("j", 2)));
    let runs = m.jobs["j"].placement["v0"];
    let other = if runs == 1 { 2 } else { 1 };
    let at = |position: u64, change: Change| Patch {
        position,
        ctis: position / 10,
        version: "ab".repeat(32),
        change,
        at_ms: 5,
    };
    let record =
        |member: NodeId, id: u64, patches: Vec<Patch>, taken: u64| Command::RecordTimeline {
            name: "j".into(),
            id,
            copy: "v0".into(),
            member,
            timeline: CopyTimeline { patches, taken },
        };
    let one = vec![at(40, Change::Deploy)];
    let two = vec![at(40, Change::Deploy), at(90, Change::Rollback)];
    assert_eq!(m.apply(&record(runs, 1, one.clone(), 1)), Reply::Done);
    assert_eq!(m.apply(&record(runs, 1, one.clone(), 1)), Reply::Unchanged);
    assert_eq!(m.apply(&record(runs, 1, two.clone(), 2)), Reply::Done);
    // Sent again late: the longer one stays.
    assert_eq!(m.apply(&record(runs, 1, one.clone(), 1)), Reply::Unchanged);
    assert_eq!(m.jobs["j"].timelines["v0"].patches, two);
    assert_eq!(m.jobs["j"].timelines["v0"].taken, 2);
    // The same change at another position: refused, naming both.
    let moved = vec![at(40, Change::Deploy), at(95, Change::Rollback)];
    assert!(matches!(
        m.apply(&record(runs, 1, moved, 2)),
        Reply::Refused(why) if why.contains("change 2") && why.contains("position 95") && why.contains("position 90")
    ));
    // From a member the copy does not run on, or another incarnation.
    let three = vec![two[0].clone(), two[1].clone(), at(120, Change::Deploy)];
    assert!(matches!(
        m.apply(&record(other, 1, three.clone(), 3)),
        Reply::Refused(why) if why.contains(&format!("no longer runs on member {other}"))
    ));
    assert!(matches!(
        m.apply(&record(runs, 2, three, 3)),
        Reply::Refused(why) if why.contains("incarnation 2 of job `j`")
    ));
    assert_eq!(m.jobs["j"].timelines["v0"].patches, two);
}

mod moves;
