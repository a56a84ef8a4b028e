//! Vertices moving between members: stragglers, members back after a
//! loss, handed-over backups, drains and the member a vertex left.

use super::*;

#[test]
fn a_straggler_gets_a_duplicate_on_its_ready_backup_and_whichever_catches_up_stays() {
    let mut m = members(3);
    m.apply(&Command::SubmitJob(spec("j", 6)));
    let slow = |v: &str, slow| Command::Straggler {
        name: "j".into(),
        id: 1,
        vertex: v.into(),
        slow,
    };
    // Not before its backup holds a snapshot of it.
    assert_eq!(m.straggler_duplicate("j", "v0"), None);
    assert_eq!(m.apply(&slow("v0", true)), Reply::Unchanged);
    let (own, backup) = (m.jobs["j"].placement["v0"], m.jobs["j"].backups["v0"]);
    ready(&mut m, "v0", backup);
    assert_eq!(m.straggler_duplicate("j", "v0"), Some(backup));
    assert_eq!(m.apply(&slow("v0", true)), Reply::Done);
    assert_eq!(m.straggler_duplicate("j", "v0"), None, "it has one");
    assert_eq!(m.apply(&slow("v0", true)), Reply::Unchanged);
    assert_eq!(m.jobs["j"].duplicates.get("v0"), Some(&backup));
    // The straggler caught up first: the duplicate goes, the vertex stays.
    assert_eq!(m.apply(&slow("v0", false)), Reply::Done);
    assert!(m.jobs["j"].duplicates.is_empty() && m.jobs["j"].stragglers.is_empty());
    assert_eq!(m.jobs["j"].placement["v0"], own);
    // Again, and this time the duplicate catches up first: the vertex moves.
    assert_eq!(m.apply(&slow("v0", true)), Reply::Done);
    // A change of members keeps the duplicate while both members are up.
    let other = (1..=3)
        .find(|m| *m != own && *m != backup)
        .expect("a third");
    m.apply(&Command::Lost { id: other });
    assert_eq!(m.jobs["j"].duplicates.get("v0"), Some(&backup));
    assert_eq!(m.apply(&switch("v0", backup)), Reply::Done);
    let job = &m.jobs["j"];
    assert_eq!(job.placement["v0"], backup);
    assert!(job.stragglers.is_empty() && job.duplicates.is_empty());
    // The member it left backs it up: its copy of the output is whole.
    // Not ready yet, it draws no move back to even out the load.
    assert_eq!(job.backups["v0"], own, "{job:?}");
    assert!(!job.ready.contains("v0"));
    // A sink never runs twice.
    let mut m = members(2);
    let mut s = spec("j", 1);
    s.vertices = vec!["sink0".into()];
    m.apply(&Command::SubmitJob(s));
    let b = m.jobs["j"].backups["sink0"];
    ready(&mut m, "sink0", b);
    assert_eq!(m.straggler_duplicate("j", "sink0"), None);
    assert_eq!(m.apply(&slow("sink0", true)), Reply::Unchanged);
    // Nor a replicated vertex: its replicas run already.
    let mut m = members(3);
    let mut s = spec("j", 1);
    s.replicate = [("v0".to_string(), 2)].into();
    m.apply(&Command::SubmitJob(s));
    let b = m.jobs["j"].backups["v0"];
    ready(&mut m, "v0", b);
    assert!(m.jobs["j"].replicas.contains_key("v0"));
    assert_eq!(m.straggler_duplicate("j", "v0"), None);
    assert_eq!(m.apply(&slow("v0", true)), Reply::Unchanged);
    // It moves to a replica instead, already running; the instance where
    // it was goes, and its ready backup becomes a replica in its place.
    let own = m.jobs["j"].placement["v0"];
    let replica = *m.jobs["j"].replicas["v0"].first().expect("a replica");
    let promote = |member| Command::Promote {
        name: "j".into(),
        id: 1,
        vertex: "v0".into(),
        member,
    };
    assert_eq!(m.apply(&promote(b)), Reply::Unchanged, "not a replica");
    assert_eq!(m.apply(&promote(replica)), Reply::Done);
    let job = &m.jobs["j"];
    assert_eq!(job.placement["v0"], replica);
    assert!(!job.instances("v0").contains(&own), "{job:?}");
    assert_eq!(job.replicas["v0"], [b].into(), "{job:?}");
    assert_ne!(job.backups.get("v0"), Some(&replica), "{job:?}");
    // Once moved, it has no duplicate either.
    assert_eq!(m.straggler_duplicate("j", "v0"), None);
    assert_eq!(m.apply(&promote(replica)), Reply::Unchanged);
    // A copy of a stage that has had changes does: its duplicate follows
    // the copy's switches.
    let mut m = members(2);
    let mut s = spec("j", 1);
    s.vertices = vec!["tally__p0".into()];
    m.apply(&Command::SubmitJob(s));
    let b = m.jobs["j"].backups["tally__p0"];
    ready(&mut m, "tally__p0", b);
    m.apply(&Command::PatchJob {
        name: "j".into(),
        patch: PatchRequest {
            stage: "tally".into(),
            change: StageChange::FilterAdd {
                text: "amount > 3".into(),
            },
            origin: 1,
            nonce: 5,
        },
    });
    assert_eq!(m.apply(&slow("tally__p0", true)), Reply::Done);
    assert_eq!(
        m.jobs["j"]
            .followers("tally__p0")
            .into_iter()
            .collect::<Vec<_>>(),
        [b]
    );
}

/// A member back after a loss runs nothing: it becomes the backup of a
/// vertex of the busiest member at a time, and once it stored that one's
/// snapshot the vertex moves to it through a duplicate, until no member
/// runs two more than another. Sinks stay.
#[test]
fn a_member_back_after_a_loss_gets_vertices_again_through_duplicates() {
    let mut m = members(3);
    let mut s = spec("j", 9);
    s.vertices.push("sink0".into());
    m.apply(&Command::SubmitJob(s));
    all_ready(&mut m);
    m.apply(&Command::Lost { id: 3 });
    all_ready(&mut m);
    assert!(m.jobs["j"].placement.values().all(|p| *p != 3));
    m.apply(&Command::Back { id: 3 });
    let job = m.jobs["j"].clone();
    assert!(
        job.placement.values().all(|p| *p != 3),
        "placed only by a move"
    );
    let handed: Vec<&String> = job
        .backups
        .iter()
        .filter(|(_, b)| **b == 3)
        .map(|(v, _)| v)
        .collect();
    assert_eq!(handed.len(), 1, "one vertex at a time: {job:?}");
    assert!(job.duplicates.values().all(|d| *d != 3), "{job:?}");
    // A snapshot it stored before it acted on its loss counts for nothing
    // (acting on it emptied the copies the snapshot stands on).
    let stale = Command::BackupReady {
        name: "j".into(),
        id: 1,
        vertices: vec![handed[0].clone()],
        member: 3,
        acted: 0,
        from: vec![runs_on(&m, handed[0])],
    };
    assert_eq!(m.apply(&stale), Reply::Unchanged);
    assert!(!m.jobs["j"].ready.contains(handed[0]));
    // It stores the snapshot: the vertex gets a duplicate there.
    ready(&mut m, handed[0], 3);
    let job = m.jobs["j"].clone();
    assert_eq!(job.duplicates.get(handed[0]), Some(&3), "{job:?}");
    assert!(job.moving.contains(handed[0]));
    // Each duplicate catches up and takes its vertex's place, backups store
    // snapshots, and more move, until the load is even.
    for _ in 0..40 {
        let job = m.jobs["j"].clone();
        for v in &job.moving {
            assert_eq!(m.apply(&switch(v, job.duplicates[v])), Reply::Done);
        }
        all_ready(&mut m);
    }
    let job = &m.jobs["j"];
    assert!(
        job.moving.is_empty() && job.duplicates.is_empty(),
        "{job:?}"
    );
    assert_eq!(job.placement["sink0"], 1, "the sink stays");
    let load = m.load();
    let counts: Vec<usize> = (1..=3)
        .map(|id| load.get(&id).copied().unwrap_or(0))
        .collect();
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(hi - lo <= 1, "{counts:?}");
    assert!(
        job.ready.len() == job.backups.len(),
        "every vertex has a ready backup again"
    );
}

/// Three members, a job of nine vertices whose backups all stored a
/// snapshot, member 3 lost and back: one vertex's backup is handed to it.
fn backup_handed_to_a_member_back() -> Metadata {
    let mut m = members(3);
    m.apply(&Command::SubmitJob(spec("j", 9)));
    all_ready(&mut m);
    m.apply(&Command::Lost { id: 3 });
    all_ready(&mut m);
    m.apply(&Command::Back { id: 3 });
    m
}

/// A backup handed to a member back after a loss (to even out the load)
/// leaves the previous, ready one backing the vertex up until the new one
/// stored a snapshot: the vertex's member lost meanwhile, the vertex moves
/// to the previous one instead of waiting for its member.
#[test]
fn a_vertex_whose_new_backup_is_not_ready_moves_to_the_previous_one() {
    let mut m = backup_handed_to_a_member_back();
    let job = m.jobs["j"].clone();
    let (vertex, previous) = job
        .handing
        .iter()
        .next()
        .map(|(v, p)| (v.clone(), *p))
        .expect("a backup handed over");
    assert_eq!(job.backups[&vertex], 3, "{job:?}");
    assert!(!job.ready.contains(&vertex));
    assert!(
        job.backed_by(previous).any(|v| v == vertex),
        "the previous backup goes on"
    );
    let member = job.placement[&vertex];
    m.apply(&Command::Lost { id: member });
    let job = m.jobs["j"].clone();
    assert_eq!(job.placement[&vertex], previous, "{job:?}");
    assert!(!job.handing.contains_key(&vertex));
    // Handed again and made ready: the previous backup lets go.
    let mut m = backup_handed_to_a_member_back();
    let vertex = m.jobs["j"].handing.keys().next().cloned().expect("handed");
    ready(&mut m, &vertex, 3);
    let job = &m.jobs["j"];
    assert!(!job.handing.contains_key(&vertex), "{job:?}");
    assert!(job.backed_by(3).any(|v| v == vertex));
}

/// A backup's word about a snapshot fetched from a member the vertex has
/// left since (lost while it ran: the vertex resumed elsewhere from an
/// older snapshot) is ignored; one fetched where the vertex runs now counts.
#[test]
fn a_backups_word_about_a_snapshot_of_a_run_the_cluster_left_is_ignored() {
    let mut m = backup_handed_to_a_member_back();
    let vertex = m.jobs["j"].handing.keys().next().cloned().expect("handed");
    // Member 3 fetched a snapshot from the vertex's member, which is then
    // lost: the vertex resumes on its previous backup, and 3 stays its
    // backup, not ready.
    let fetched = runs_on(&m, &vertex);
    m.apply(&Command::Lost { id: fetched.0 });
    let job = m.jobs["j"].clone();
    assert_ne!(job.placement[&vertex], fetched.0);
    assert_eq!(job.backups[&vertex], 3, "{job:?}");
    let acted = m.members[&3].losses;
    let word = |from: (NodeId, u64)| Command::BackupReady {
        name: "j".into(),
        id: 1,
        vertices: vec![vertex.clone()],
        member: 3,
        acted,
        from: vec![from],
    };
    assert_eq!(m.apply(&word(fetched)), Reply::Unchanged);
    assert!(!m.jobs["j"].ready.contains(&vertex));
    // Back again, the member no longer runs the vertex: still ignored.
    m.apply(&Command::Back { id: fetched.0 });
    assert!(!m.jobs["j"].ready.contains(&vertex) || m.jobs["j"].backups[&vertex] != 3);
    if m.jobs["j"].backups[&vertex] == 3 {
        assert_eq!(m.apply(&word(fetched)), Reply::Unchanged);
    }
    // A snapshot from where the vertex runs now counts.
    let now = runs_on(&m, &vertex);
    let backup = m.jobs["j"].backups[&vertex];
    let acted = m.members[&backup].losses;
    m.apply(&Command::BackupReady {
        name: "j".into(),
        id: 1,
        vertices: vec![vertex.clone()],
        member: backup,
        acted,
        from: vec![now],
    });
    assert!(m.jobs["j"].ready.contains(&vertex), "{:?}", m.jobs["j"]);
}

/// A move whose target is lost before its duplicate caught up goes; the
/// vertex stays where it runs.
#[test]
fn a_move_to_a_member_lost_again_goes() {
    let mut m = members(3);
    m.apply(&Command::SubmitJob(spec("j", 9)));
    all_ready(&mut m);
    m.apply(&Command::Lost { id: 3 });
    m.apply(&Command::Back { id: 3 });
    // The vertices that moved in the loss have new backups, not ready:
    // nothing evens out until they are (recovery first).
    let job = &m.jobs["j"];
    assert!(job.backups.keys().any(|v| !job.ready.contains(v)));
    assert!(
        job.handing.is_empty() && job.moving.is_empty() && job.backed_by(3).count() == 0,
        "{job:?}"
    );
    // Then the member back becomes the backup of one, which moves there
    // once that backup is ready.
    all_ready(&mut m);
    assert_eq!(m.jobs["j"].backed_by(3).count(), 1, "{:?}", m.jobs["j"]);
    all_ready(&mut m);
    let before = m.jobs["j"].clone();
    assert!(!before.moving.is_empty());
    m.apply(&Command::Lost { id: 3 });
    let job = &m.jobs["j"];
    assert!(
        job.moving.is_empty() && job.duplicates.is_empty(),
        "{job:?}"
    );
    for v in &before.moving {
        assert_eq!(job.placement.get(v), before.placement.get(v));
    }
}

/// A vertex that moves to its duplicate gets the member it left as its
/// backup, not ready yet: that member's copy of its output is whole.
#[test]
fn a_vertex_that_moved_to_its_duplicate_is_backed_up_by_the_member_it_left() {
    let mut m = members(3);
    m.apply(&Command::SubmitJob(spec("j", 6)));
    all_ready(&mut m);
    // A vertex whose own member is not the lowest-id other member (the
    // one an even choice would take).
    let job = m.jobs["j"].clone();
    let (vertex, own, backup) = job
        .placement
        .iter()
        .map(|(v, own)| (v.clone(), *own, job.backups[v]))
        .find(|(_, own, backup)| (1..=3).find(|m| m != backup) != Some(*own))
        .expect("such a vertex");
    let slow = Command::Straggler {
        name: "j".into(),
        id: 1,
        vertex: vertex.clone(),
        slow: true,
    };
    assert_eq!(m.apply(&slow), Reply::Done);
    assert_eq!(m.apply(&switch(&vertex, backup)), Reply::Done);
    let job = &m.jobs["j"];
    assert_eq!(job.placement[&vertex], backup);
    assert_eq!(job.backups[&vertex], own, "{job:?}");
    assert!(!job.ready.contains(&vertex));
    assert_eq!(job.left.get(&vertex), Some(&own), "{job:?}");
    // The new member lost before the one it left stored a snapshot from
    // it: the vertex moves back, to resume from its own latest snapshot.
    m.apply(&Command::Lost { id: backup });
    let job = &m.jobs["j"];
    assert_eq!(job.placement[&vertex], own);
    assert!(job.left.is_empty(), "{job:?}");
}

/// A drained member goes on backing up what it holds a snapshot of (the
/// vertices it backed up, and those that moved off it) until their new
/// backups are ready: a vertex whose member is lost meanwhile moves to it
/// rather than waiting for the lost member.
#[test]
fn a_drained_member_backs_up_until_the_new_backups_are_ready() {
    let mut m = members(3);
    m.apply(&Command::SubmitJob(spec("j", 6)));
    all_ready(&mut m);
    let before = m.jobs["j"].clone();
    let (vertex, own, backup) = {
        let (v, own) = before.placement.iter().next().expect("a vertex");
        (v.clone(), *own, before.backups[v])
    };
    let third = (1..=3)
        .find(|m| *m != own && *m != backup)
        .expect("a third");
    m.apply(&Command::Drain { id: own });
    let job = &m.jobs["j"];
    assert_eq!(job.duplicates.get(&vertex), Some(&backup));
    // What it backed up gets a backup that takes work, and it backs that
    // up as the previous one meanwhile.
    let backed: Vec<&String> = before
        .backups
        .iter()
        .filter(|(_, b)| **b == own)
        .map(|(v, _)| v)
        .collect();
    assert!(!backed.is_empty(), "{before:?}");
    for v in &backed {
        assert_ne!(job.backups[*v], own, "{job:?}");
        assert_eq!(job.handing.get(*v), Some(&own), "{job:?}");
    }
    assert_eq!(m.apply(&switch(&vertex, backup)), Reply::Done);
    let job = &m.jobs["j"];
    assert_eq!(job.placement[&vertex], backup);
    assert_eq!(job.backups[&vertex], third, "{job:?}");
    assert_eq!(job.handing.get(&vertex), Some(&own), "{job:?}");
    assert!(job.left.is_empty(), "{job:?}");
    assert!(job.backed_by(own).any(|v| v == vertex));
    // Its new member lost before the new backup is ready: the vertex
    // moves back to the drained member, which holds its latest snapshot,
    // to be drained again once it has a ready backup.
    let mut lost = m.clone();
    lost.apply(&Command::Lost { id: backup });
    let job = &lost.jobs["j"];
    assert_eq!(job.placement[&vertex], own, "{job:?}");
    assert_eq!(job.backups[&vertex], third, "{job:?}");
    assert!(!job.handing.contains_key(&vertex), "{job:?}");
    ready(&mut lost, &vertex, third);
    assert_eq!(lost.jobs["j"].duplicates.get(&vertex), Some(&third));
    // Once the new backups are ready, the drained member backs up nothing.
    let job = m.jobs["j"].clone();
    for v in job.handing.keys() {
        ready(&mut m, v, job.backups[v]);
    }
    assert_eq!(m.jobs["j"].backed_by(own).count(), 0, "{:?}", m.jobs["j"]);
}

/// While a drained member backs up vertices whose new backups are not
/// ready, nothing moves to even out the load, not even to a new member:
/// the drain comes first.
#[test]
fn nothing_evens_out_while_a_drain_leaves_vertices_without_a_ready_backup() {
    let mut m = members(3);
    m.apply(&Command::SubmitJob(spec("j", 6)));
    all_ready(&mut m);
    m.apply(&Command::Drain { id: 3 });
    assert!(!m.jobs["j"].handing.is_empty(), "{:?}", m.jobs["j"]);
    m.apply(&Command::Join {
        addr: "127.0.0.1:7004".into(),
        id: Some(4),
        nonce: 4,
    });
    let job = &m.jobs["j"];
    assert!(job.moving.is_empty(), "{job:?}");
    assert_eq!(job.backed_by(4).count(), 0, "{job:?}");
    // Once every vertex is protected again, the new member gets work.
    for (v, b) in job.backups.clone() {
        if !m.jobs["j"].ready.contains(&v) && m.jobs["j"].placement[&v] != 3 {
            ready(&mut m, &v, b);
        }
    }
    let job = &m.jobs["j"];
    assert!(job.handing.values().all(|h| *h != 3), "{job:?}");
    assert!(
        job.backed_by(4).count() > 0 || !job.moving.is_empty(),
        "{job:?}"
    );
}

/// The command that moves `vertex` of job `j` (id 1) to its duplicate on
/// `member`.
fn switch(vertex: &str, member: NodeId) -> Command {
    Command::Switch {
        name: "j".into(),
        id: 1,
        vertex: vertex.into(),
        member,
    }
}
