//! The coordinator's metadata: what every member agrees on through Raft.
//! A pure state machine: [`Metadata::apply`] is a function of the state and
//! one command, so every member that applies the same log holds the same
//! metadata.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A member's id: assigned when it first joins, never reused.
pub type NodeId = u64;

/// The founding member's id.
pub const FIRST: NodeId = 1;

/// A member's health as the coordinator decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Heard from within the heartbeat timeout.
    Up,
    /// Silent for longer than the heartbeat timeout.
    Lost,
    /// A new member joined at its address: its disk is gone, it never returns.
    Replaced,
}

impl Health {
    /// The name `weir cluster status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Lost => "lost",
            Health::Replaced => "replaced",
        }
    }
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The address it listens on.
    pub addr: String,
    /// Its health.
    pub health: Health,
    /// The number its join carried.
    #[serde(default)]
    pub nonce: u64,
    /// The number its process announced itself with last (see
    /// [`Command::Announce`]).
    #[serde(default)]
    pub announced: u64,
    /// Being drained (`weir node drain`): its vertices move to their
    /// backups as those are ready, and nothing new is placed or backed up
    /// on it, until it joins again (restarts).
    #[serde(default)]
    pub draining: bool,
    /// How many times it was declared lost: a member that finds this past
    /// what it last acted on distrusts what its vertices wrote meanwhile.
    #[serde(default)]
    pub losses: u64,
}

/// A change to the metadata, as proposed to the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A node joins: a new one (`id` none) gets the next id; a known one
    /// announces its (maybe new) address and is up. A member lost at the
    /// same address is replaced: a node that starts where a lost one
    /// listened, without its id, has lost that one's disk.
    Join {
        /// Its address.
        addr: String,
        /// Its id, when it has one.
        id: Option<NodeId>,
        /// A new node's number for this join (see
        /// [`weir_net::cluster::ClusterRequest::Join`]).
        #[serde(default)]
        nonce: u64,
    },
    /// A member was silent longer than the heartbeat timeout.
    Lost {
        /// The member.
        id: NodeId,
    },
    /// A lost member is heard from again.
    Back {
        /// The member.
        id: NodeId,
    },
    /// A job is submitted: it gets the next incarnation and its vertices
    /// are placed on the members that are up.
    SubmitJob(crate::jobs::JobSpec),
    /// A job is cancelled: every member stops its vertices.
    CancelJob {
        /// The job.
        name: String,
    },
    /// A change to a stage of a job: every member makes it to the copies
    /// of the stage it runs, in the order the changes were written.
    PatchJob {
        /// The job.
        name: String,
        /// The change.
        patch: crate::jobs::PatchRequest,
    },
    /// A member's process (re)started: once it applies this entry, its
    /// metadata is as new as the coordinator's was when it started.
    Announce {
        /// The member.
        id: NodeId,
        /// Drawn by the process.
        nonce: u64,
    },
    /// A member is drained for maintenance (`weir node drain`).
    Drain {
        /// The member.
        id: NodeId,
    },
    /// A member stored the first snapshot of vertices it backs up: from
    /// now on they may move there.
    BackupReady {
        /// The job.
        name: String,
        /// Its incarnation.
        id: u64,
        /// The vertices.
        vertices: Vec<String>,
        /// The backup.
        member: NodeId,
        /// How many of its losses the backup had acted on when it stored
        /// them: a word from before it acted on its latest loss is ignored
        /// (acting on it emptied the copies the snapshots stand on).
        #[serde(default)]
        acted: u64,
        /// Per vertex, in the order of `vertices`: the member whose
        /// instance wrote the snapshot, and how many times that member had
        /// been declared lost when the backup fetched it. The word counts
        /// only while the vertex runs there and that member was not lost
        /// since: an instance on a member lost while it still ran writes
        /// a run the cluster did not go on with (the vertex resumed
        /// elsewhere from an older snapshot). Empty: not said.
        #[serde(default)]
        from: Vec<(NodeId, u64)>,
    },
    /// The member that runs a copy of a stage made a switch: the copy's
    /// timeline, recorded before it writes anything past the switch.
    RecordTimeline {
        /// The job.
        name: String,
        /// Its incarnation.
        id: u64,
        /// The copy.
        copy: String,
        /// The member that runs it.
        member: NodeId,
        /// Its timeline.
        timeline: crate::jobs::CopyTimeline,
    },
    /// A duplicate of a drained member's vertex caught up: the vertex moves
    /// to the member running the duplicate.
    Switch {
        /// The job.
        name: String,
        /// Its incarnation.
        id: u64,
        /// The vertex.
        vertex: String,
        /// The member running the duplicate.
        member: NodeId,
    },
    /// A vertex fell far behind its stage's peers (`slow`): it gets a
    /// duplicate on its backup, and whichever catches up first stays; or
    /// it caught up first, and its duplicate goes.
    Straggler {
        /// The job.
        name: String,
        /// Its incarnation.
        id: u64,
        /// The vertex.
        vertex: String,
        /// Behind (`true`), or caught up again (`false`).
        slow: bool,
    },
    /// A follower of a copy of a stage (a replica or duplicate of it)
    /// stopped reading because a change to the stage waits: the vertex
    /// makes the change past where it stopped.
    Hold {
        /// The job.
        name: String,
        /// Its incarnation.
        id: u64,
        /// The copy.
        copy: String,
        /// The follower's member.
        member: NodeId,
        /// The change, and where the follower stopped.
        held: crate::jobs::Held,
    },
    /// A follower of a copy (a replica or duplicate of it) failed: it is
    /// dropped, and the vertex runs on (a replica short is replenished
    /// from the backup).
    DropFollower {
        /// The job.
        name: String,
        /// Its incarnation.
        id: u64,
        /// The copy.
        copy: String,
        /// The follower's member.
        member: NodeId,
    },
    /// A replicated vertex fell far behind its stage's peers while its
    /// replica on `member` did not: the vertex moves to that replica,
    /// already running, and its instance where it was goes (the vertex is
    /// a replica short until its backup becomes one).
    Promote {
        /// The job.
        name: String,
        /// Its incarnation.
        id: u64,
        /// The vertex.
        vertex: String,
        /// The member running the replica.
        member: NodeId,
    },
    /// An ingest stream is created: two members are chosen to hold it.
    CreateStream(crate::streams::StreamSpec),
    /// A new holder of an ingest stream holds every entry its primary
    /// acknowledged: from now on it may take the primary's place.
    StreamReady {
        /// The stream.
        name: String,
        /// The holder.
        member: NodeId,
    },
    /// No reader of ingest stream `stream` needs it below `low`, as every
    /// member reported for metadata epoch `epoch`: each member collects its
    /// copy below, and jobs submitted from now on start there. Does nothing
    /// at another epoch.
    Collect {
        /// The stream.
        stream: String,
        /// Its new collection point.
        low: u64,
        /// The epoch the reports were made for.
        epoch: u64,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Reply {
    /// A join: the member's id, and the member it replaced.
    Joined {
        /// The member's id.
        id: NodeId,
        /// The lost member at the same address, now replaced.
        replaced: Option<NodeId>,
    },
    /// A job was submitted with this incarnation.
    Submitted {
        /// The job's incarnation.
        id: u64,
    },
    /// A stage change was written with this index in the job's changes.
    Patched {
        /// Its index.
        index: usize,
    },
    /// The change took effect.
    #[default]
    Done,
    /// Nothing changed (the command no longer applies).
    Unchanged,
    /// The command is refused, for this reason.
    Refused(String),
}

/// The replicated metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Every member that ever joined, by id.
    pub members: BTreeMap<NodeId, Member>,
    /// The id the next new member gets.
    next_id: NodeId,
    /// The jobs the cluster runs, by name.
    #[serde(default)]
    pub jobs: BTreeMap<String, crate::jobs::ClusterJob>,
    /// The incarnation the next submitted job gets.
    #[serde(default)]
    pub(crate) next_job: u64,
    /// The ingest streams, by name.
    #[serde(default)]
    pub streams: BTreeMap<String, crate::streams::ClusterStream>,
    /// How many changes may have placed an instance of a vertex where none
    /// ran (see [`crate::collect`]): a member's report of how far it needs
    /// the ingest streams counts only for the epoch it acted on.
    #[serde(default)]
    pub epoch: u64,
}

impl Metadata {
    /// Applies one command.
    pub fn apply(&mut self, command: &Command) -> Reply {
        // A join or submit sent again (its answer was lost) changes nothing.
        let members = matches!(command, Command::Join { .. }).then(|| self.members.clone());
        let next_job = self.next_job;
        let reply = self.apply_command(command);
        let again = match command {
            Command::Join { .. } => members.as_ref() == Some(&self.members),
            Command::SubmitJob(_) => self.next_job == next_job,
            _ => false,
        };
        if !again && crate::collect::places(command, &reply) {
            self.epoch += 1;
        }
        // A member lost, back, new or drained, or a backup ready: vertices
        // move to their backups, and vertices without a backup get one.
        if matches!(
            command,
            Command::Join { .. }
                | Command::Lost { .. }
                | Command::Back { .. }
                | Command::Drain { .. }
                | Command::BackupReady { .. }
                | Command::Switch { .. }
                | Command::Promote { .. }
        ) {
            self.replace();
            self.replace_holders();
        }
        // An instance that moved or went no longer says where it stopped.
        self.prune_holds();
        reply
    }

    fn apply_command(&mut self, command: &Command) -> Reply {
        match command {
            Command::Join { addr, id, nonce } => {
                // The same join again (its answer was lost): the same id.
                if id.is_none() && *nonce != 0 {
                    let again = self.members.iter().find(|(_, m)| {
                        m.addr == *addr && m.nonce == *nonce && m.health != Health::Replaced
                    });
                    if let Some((id, _)) = again {
                        return Reply::Joined {
                            id: *id,
                            replaced: None,
                        };
                    }
                }
                if let Some(m) = id.and_then(|id| self.members.get(&id))
                    && m.health == Health::Replaced
                {
                    return Reply::Refused(format!(
                        "member {} was replaced by a new member at {} after it was lost; its data directory is out of date: delete it to join as a new member",
                        id.unwrap_or_default(),
                        m.addr
                    ));
                }
                // The founder registers itself once it leads, maybe after
                // others joined: its id is never given to another.
                let id = match id {
                    Some(id) => *id,
                    None => self.next_id.max(FIRST + 1),
                };
                self.next_id = self.next_id.max(id + 1).max(FIRST + 1);
                let replaced = self
                    .members
                    .iter()
                    .find(|(other, m)| {
                        **other != id && m.addr == *addr && m.health != Health::Replaced
                    })
                    .map(|(other, _)| *other);
                if let Some(other) = replaced
                    && let Some(m) = self.members.get_mut(&other)
                {
                    m.health = Health::Replaced;
                }
                self.members.insert(
                    id,
                    Member {
                        addr: addr.clone(),
                        health: Health::Up,
                        nonce: *nonce,
                        // A known member's address or health changes; what
                        // its process announced stays.
                        announced: self.members.get(&id).map_or(0, |m| m.announced),
                        // A drained member that starts again takes work again.
                        draining: false,
                        losses: self.members.get(&id).map_or(0, |m| m.losses),
                    },
                );
                Reply::Joined { id, replaced }
            }
            Command::Lost { id } => {
                let reply = self.set(*id, Health::Up, Health::Lost);
                if reply == Reply::Done
                    && let Some(m) = self.members.get_mut(id)
                {
                    m.losses += 1;
                }
                reply
            }
            Command::Drain { id } => self.drain(*id),
            Command::Back { id } => self.set(*id, Health::Lost, Health::Up),
            Command::SubmitJob(spec) => self.submit(spec),
            Command::PatchJob { name, patch } => self.patch(name, patch),
            Command::Announce { id, nonce } => match self.members.get_mut(id) {
                Some(m) if m.announced != *nonce => {
                    m.announced = *nonce;
                    Reply::Done
                }
                _ => Reply::Unchanged,
            },
            Command::BackupReady {
                name,
                id,
                vertices,
                member,
                acted,
                from,
            } => match self.jobs.get_mut(name) {
                Some(_) if self.members.get(member).is_some_and(|m| m.losses > *acted) => {
                    Reply::Unchanged
                }
                Some(job) if job.id == *id => {
                    // A word from a member that no longer backs a vertex up
                    // is ignored, as is one about a snapshot of a run the
                    // cluster left.
                    let mut reply = Reply::Unchanged;
                    for (i, v) in vertices.iter().enumerate() {
                        let current = from.get(i).is_none_or(|(m, losses)| {
                            job.placement.get(v) == Some(m)
                                && self.members.get(m).is_some_and(|x| x.losses == *losses)
                        });
                        if current
                            && job.backups.get(v) == Some(member)
                            && job.ready.insert(v.clone())
                        {
                            job.snapshotted.insert(v.clone());
                            job.handing.remove(v);
                            job.left.remove(v);
                            reply = Reply::Done;
                        }
                    }
                    reply
                }
                _ => Reply::Unchanged,
            },
            Command::RecordTimeline {
                name,
                id,
                copy,
                member,
                timeline,
            } => self.record_timeline(name, *id, copy, *member, timeline),
            Command::Switch {
                name,
                id,
                vertex,
                member,
            } => self.switch(name, *id, vertex, *member),
            Command::Straggler {
                name,
                id,
                vertex,
                slow,
            } => self.straggler(name, *id, vertex, *slow),
            Command::Promote {
                name,
                id,
                vertex,
                member,
            } => self.promote(name, *id, vertex, *member),
            Command::Hold {
                name,
                id,
                copy,
                member,
                held,
            } => self.hold(name, *id, copy, *member, *held),
            Command::DropFollower {
                name,
                id,
                copy,
                member,
            } => self.drop_follower(name, *id, copy, *member),
            Command::CreateStream(spec) => self.create_stream(spec),
            Command::StreamReady { name, member } => self.stream_ready(name, *member),
            Command::Collect { stream, low, epoch } => self.collect(stream, *low, *epoch),
            Command::CancelJob { name } => match self.jobs.remove(name) {
                Some(_) => Reply::Done,
                None => Reply::Unchanged,
            },
        }
    }

    /// Marks member `id` drained, if it is up and another member that is
    /// up and not drained can take its vertices.
    fn drain(&mut self, id: NodeId) -> Reply {
        match self.members.get(&id) {
            None => return Reply::Refused(format!("no member {id} in the cluster")),
            Some(m) if m.draining => return Reply::Unchanged,
            Some(m) if m.health != Health::Up => {
                return Reply::Refused(format!(
                    "member {id} is {}: only a member that is up can be drained (a lost member's vertices move by themselves)",
                    m.health.name()
                ));
            }
            Some(_) => {}
        }
        if !self.placeable().any(|other| other != id) {
            return Reply::Refused(format!(
                "member {id} cannot be drained: no other member is up (and not drained) to take its vertices"
            ));
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.draining = true;
        }
        Reply::Done
    }

    fn set(&mut self, id: NodeId, from: Health, to: Health) -> Reply {
        match self.members.get_mut(&id) {
            Some(m) if m.health == from => {
                m.health = to;
                Reply::Done
            }
            _ => Reply::Unchanged,
        }
    }

    /// Who should vote in the coordinator's elections: as many members as
    /// fit (five when there are five, else three, else one), the voters
    /// that are up first, then members that are up and whose log is caught
    /// up (`caught_up`), by id. A lost voter keeps its vote until a member
    /// that is up can take its place, in one change: taking a vote away
    /// without a replacement would leave two voters, and losing either would
    /// stop the coordinator for good.
    pub fn voters(
        &self,
        current: &BTreeSet<NodeId>,
        caught_up: impl Fn(NodeId) -> bool,
    ) -> BTreeSet<NodeId> {
        let standing = self
            .members
            .values()
            .filter(|m| m.health != Health::Replaced)
            .count();
        // Always an odd number: with two voters, losing either stops the
        // coordinator, so a second and third member vote from the same change.
        let size = match standing {
            n if n >= 5 => 5,
            n if n >= 3 => 3,
            _ => 1,
        };
        let health = |id: &NodeId| self.members.get(id).map(|m| m.health);
        let mut voters: BTreeSet<NodeId> = current
            .iter()
            .filter(|id| health(id) == Some(Health::Up))
            .take(size)
            .copied()
            .collect();
        for (id, _) in self.up() {
            if voters.len() >= size {
                break;
            }
            if !voters.contains(&id) && caught_up(id) {
                voters.insert(id);
            }
        }
        for id in current {
            if voters.len() >= size {
                break;
            }
            if health(id) == Some(Health::Lost) {
                voters.insert(*id);
            }
        }
        voters
    }

    /// How many members there are, not counting replaced ones.
    pub fn standing(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.health != Health::Replaced)
            .count()
    }

    /// The members new work may go to: up and not drained, by id.
    pub fn placeable(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.up().filter(|(_, m)| !m.draining).map(|(id, _)| id)
    }

    /// The members that are up, by id.
    pub fn up(&self) -> impl Iterator<Item = (NodeId, &Member)> {
        self.members
            .iter()
            .filter(|(_, m)| m.health == Health::Up)
            .map(|(id, m)| (*id, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn command() -> impl Strategy<Value = Command> {
        let addr = (0u8..4).prop_map(|a| format!("127.0.0.1:70{a:02}"));
        prop_oneof![
            (addr, proptest::option::of(1u64..6), 0u64..3)
                .prop_map(|(addr, id, nonce)| Command::Join { addr, id, nonce }),
            (1u64..6).prop_map(|id| Command::Lost { id }),
            (1u64..6).prop_map(|id| Command::Back { id }),
        ]
    }

    proptest! {
        /// Against a list of joins: ids are never reused, a replaced member
        /// never comes back, and no two live members share an address.
        #[test]
        fn members_follow_the_model(commands in proptest::collection::vec(command(), 0..40)) {
            let mut metadata = Metadata::default();
            let mut given = std::collections::BTreeSet::new();
            for c in &commands {
                let before = metadata.clone();
                let reply = metadata.apply(c);
                if let (Command::Join { id: None, nonce, .. }, Reply::Joined { id, .. }) = (c, &reply) {
                    // A join sent again gets the id it got the first time.
                    if *nonce != 0 && before.members.get(id).is_some_and(|m| m.nonce == *nonce) {
                        prop_assert_eq!(&before, &metadata);
                        continue;
                    }
                    prop_assert!(!before.members.contains_key(id), "id {id} reused");
                    prop_assert!(*id != FIRST, "the founder's id given to a joining node");
                    prop_assert!(given.insert(*id));
                }
                for (id, m) in &before.members {
                    if m.health == Health::Replaced {
                        prop_assert_eq!(metadata.members[id].health, Health::Replaced);
                    }
                }
                let live: Vec<_> = metadata.members.values()
                    .filter(|m| m.health != Health::Replaced).map(|m| &m.addr).collect();
                let unique: std::collections::BTreeSet<_> = live.iter().collect();
                prop_assert_eq!(live.len(), unique.len());
                // Applying is a function of the state and the command.
                let mut again = before.clone();
                prop_assert_eq!(again.apply(c), reply);
                prop_assert_eq!(&again, &metadata);
            }
        }
    }

    fn members(health: &[(NodeId, Health)]) -> Metadata {
        let mut m = Metadata::default();
        for (id, h) in health {
            m.members.insert(
                *id,
                Member {
                    addr: format!("127.0.0.1:{}", 7000 + id),
                    health: *h,
                    nonce: 0,
                    announced: 0,
                    draining: false,
                    losses: 0,
                },
            );
        }
        m
    }

    #[test]
    fn a_lost_voter_keeps_its_vote_until_a_member_can_take_its_place() {
        use Health::*;
        let set = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<_>>();
        let three = set(&[1, 2, 3]);
        // One of three lost: nobody to take its place, the voters stay.
        let m = members(&[(1, Up), (2, Lost), (3, Up)]);
        assert_eq!(m.voters(&three, |_| true), three);
        // A fourth member, caught up, takes the lost one's vote.
        let m = members(&[(1, Up), (2, Lost), (3, Up), (4, Up)]);
        assert_eq!(m.voters(&three, |_| true), set(&[1, 3, 4]));
        // Not caught up yet: not yet.
        assert_eq!(m.voters(&three, |id| id != 4), three);
        // Two members: one votes (two voters could lose neither).
        let m = members(&[(1, Up), (2, Up)]);
        assert_eq!(m.voters(&set(&[1]), |_| true), set(&[1]));
        // A replaced member's vote goes at once, even below three.
        let m = members(&[(1, Up), (2, Replaced), (3, Up)]);
        assert_eq!(m.voters(&three, |_| true), set(&[1]));
        // Five members: five voters; a sixth waits as a learner.
        let m = members(&[(1, Up), (2, Up), (3, Up), (4, Up), (5, Up), (6, Up)]);
        assert_eq!(m.voters(&three, |_| true), set(&[1, 2, 3, 4, 5]));
        // A lost voter that is back keeps its vote.
        let m = members(&[(1, Up), (2, Up), (3, Up), (4, Up)]);
        assert_eq!(m.voters(&three, |_| true), three);
    }

    #[test]
    fn a_node_at_a_lost_ones_address_replaces_it() {
        let mut m = Metadata::default();
        let addr = "127.0.0.1:7001".to_string();
        // A node may join before the founder has registered itself.
        let other = Command::Join {
            addr: "127.0.0.1:7002".into(),
            id: None,
            nonce: 0,
        };
        assert_eq!(
            m.apply(&other),
            Reply::Joined {
                id: 2,
                replaced: None
            }
        );
        assert_eq!(
            m.apply(&Command::Join {
                addr: addr.clone(),
                id: Some(FIRST),
                nonce: 0
            }),
            Reply::Joined {
                id: 1,
                replaced: None
            }
        );
        assert_eq!(m.apply(&Command::Lost { id: 1 }), Reply::Done);
        assert_eq!(m.apply(&Command::Lost { id: 1 }), Reply::Unchanged);
        // Each loss counts once, and a rejoin keeps the count.
        assert_eq!(m.members[&1].losses, 1);
        assert_eq!(m.apply(&Command::Back { id: 1 }), Reply::Done);
        assert_eq!(m.apply(&Command::Lost { id: 1 }), Reply::Done);
        assert_eq!(m.members[&1].losses, 2);
        let again = Command::Join {
            addr: addr.clone(),
            id: Some(FIRST),
            nonce: 0,
        };
        assert!(matches!(m.apply(&again), Reply::Joined { id: 1, .. }));
        assert_eq!(m.members[&1].losses, 2);
        assert_eq!(m.apply(&Command::Lost { id: 1 }), Reply::Done);
        assert_eq!(
            m.apply(&Command::Join {
                addr,
                id: None,
                nonce: 0
            }),
            Reply::Joined {
                id: 3,
                replaced: Some(1)
            }
        );
        assert_eq!(m.members[&1].health, Health::Replaced);
        assert_eq!(m.apply(&Command::Back { id: 1 }), Reply::Unchanged);
        assert_eq!(m.up().map(|(id, _)| id).collect::<Vec<_>>(), vec![2, 3]);
    }
}
