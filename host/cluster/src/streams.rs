//! Ingest streams in the coordinator's metadata. Each is held by two
//! members (one while only one can be): the primary takes every ingest,
//! writes it to the other holder first and to its own copy once that one
//! has it durable, and only then answers; so the primary's copy holds only
//! what two members have, and a job's source elsewhere reads from it.
//! When the primary is lost, a holder that is up and holds the whole
//! stream (`ready`) takes its place, and a new holder is chosen and
//! brought up to date by the primary before it counts as ready.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use weir_core::schema::ColumnSpec;

use crate::metadata::{Health, Metadata, NodeId, Reply};

/// How many members hold each ingest stream, when that many are up.
pub const HOLDERS: usize = 2;

/// An ingest stream as `weir stream create` (or a script's input) defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSpec {
    /// Its name.
    pub name: String,
    /// Its columns.
    pub columns: Vec<ColumnSpec>,
    /// The event-time column.
    pub time: String,
    /// The end-time column.
    pub end_time: Option<String>,
}

/// An ingest stream of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStream {
    /// What was created.
    pub spec: StreamSpec,
    /// The members that hold it, the primary first.
    pub holders: Vec<NodeId>,
    /// The holders that hold every entry the primary has acknowledged
    /// (from [`ClusterStream::low`] on).
    pub ready: BTreeSet<NodeId>,
    /// Its collection point: no reader needs an entry below it, every
    /// member collects its copy below it, and a job submitted now starts
    /// reading there.
    #[serde(default)]
    pub low: u64,
}

impl ClusterStream {
    /// The member that takes its ingests.
    pub fn primary(&self) -> Option<NodeId> {
        self.holders.first().copied()
    }
}

/// The columns of a spec as `weir stream ls` writes them.
fn describe(spec: &StreamSpec) -> String {
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.ty))
        .collect();
    format!(
        "({}; event time {}{})",
        columns.join(", "),
        spec.time,
        spec.end_time
            .as_ref()
            .map(|e| format!(", end time {e}"))
            .unwrap_or_default()
    )
}

impl Metadata {
    /// How many streams each member holds.
    fn stream_load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for s in self.streams.values() {
            for m in &s.holders {
                *load.entry(*m).or_insert(0) += 1;
            }
        }
        load
    }

    pub(crate) fn create_stream(&mut self, spec: &StreamSpec) -> Reply {
        if let Some(s) = self.streams.get(&spec.name) {
            if s.spec == *spec {
                return Reply::Unchanged;
            }
            return Reply::Refused(format!(
                "stream `{}` is already in the cluster with columns {}, not {}",
                spec.name,
                describe(&s.spec),
                describe(spec)
            ));
        }
        let up: Vec<NodeId> = self.placeable().collect();
        if up.is_empty() {
            return Reply::Refused("no member of the cluster is up to hold the stream".into());
        }
        let mut stream = ClusterStream {
            spec: spec.clone(),
            holders: Vec::new(),
            ready: BTreeSet::new(),
            low: 0,
        };
        add_holders(&mut stream, &up, &mut self.stream_load());
        // An empty stream is whole on every holder.
        stream.ready = stream.holders.iter().copied().collect();
        self.streams.insert(spec.name.clone(), stream);
        Reply::Done
    }

    pub(crate) fn stream_ready(&mut self, name: &str, member: NodeId) -> Reply {
        match self.streams.get_mut(name) {
            Some(s) if s.holders.contains(&member) && !s.ready.contains(&member) => {
                s.ready.insert(member);
                Reply::Done
            }
            _ => Reply::Unchanged,
        }
    }

    /// After a change of members: a stream whose primary is not up (or is
    /// drained) gets a ready holder that is as its primary; holders that
    /// are gone are dropped and new ones added (not ready) up to
    /// [`HOLDERS`]. A stream none of whose ready holders is up waits for
    /// one: nothing else holds what it acknowledged.
    pub(crate) fn replace_holders(&mut self) {
        let up: Vec<NodeId> = self.placeable().collect();
        let mut load = self.stream_load();
        let health: BTreeMap<NodeId, Health> =
            self.members.iter().map(|(id, m)| (*id, m.health)).collect();
        for stream in self.streams.values_mut() {
            // A replaced member's disk is gone: it holds nothing.
            stream
                .holders
                .retain(|h| health.get(h).is_some_and(|h| *h != Health::Replaced));
            stream.ready.retain(|h| stream.holders.contains(h));
            let serving = |h: &NodeId| up.contains(h) && stream.ready.contains(h);
            let Some(primary) = stream.holders.iter().copied().find(serving) else {
                continue;
            };
            let old = stream.holders.clone();
            stream.holders.retain(|h| *h != primary && up.contains(h));
            stream.holders.insert(0, primary);
            for gone in old.iter().filter(|h| !stream.holders.contains(h)) {
                stream.ready.remove(gone);
                if let Some(n) = load.get_mut(gone) {
                    *n = n.saturating_sub(1);
                }
            }
            add_holders(stream, &up, &mut load);
        }
    }
}

/// Adds holders to `stream` from `up` until it has [`HOLDERS`] (or every
/// member that is up): those holding the fewest streams, the lowest id
/// among equals. They are not ready.
fn add_holders(stream: &mut ClusterStream, up: &[NodeId], load: &mut BTreeMap<NodeId, usize>) {
    while stream.holders.len() < HOLDERS {
        let Some(next) = up
            .iter()
            .filter(|m| !stream.holders.contains(m))
            .min_by_key(|m| (load.get(*m).copied().unwrap_or(0), **m))
            .copied()
        else {
            break;
        };
        *load.entry(next).or_insert(0) += 1;
        stream.holders.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Command, Member};
    use proptest::prelude::*;

    fn spec(name: &str) -> StreamSpec {
        StreamSpec {
            name: name.into(),
            columns: vec![ColumnSpec {
                name: "t".into(),
                ty: "int64".into(),
            }],
            time: "t".into(),
            end_time: None,
        }
    }

    fn three() -> Metadata {
        let mut m = Metadata::default();
        for id in 1..=3 {
            m.members.insert(
                id,
                Member {
                    addr: format!("127.0.0.1:{}", 7000 + id),
                    health: Health::Up,
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
    fn a_stream_is_held_by_two_members_and_moves_to_the_ready_one() {
        let mut m = three();
        assert_eq!(m.apply(&Command::CreateStream(spec("a"))), Reply::Done);
        assert_eq!(m.apply(&Command::CreateStream(spec("b"))), Reply::Done);
        assert_eq!(m.streams["a"].holders, vec![1, 2]);
        // The second goes where fewer streams are held.
        assert_eq!(m.streams["b"].holders, vec![3, 1]);
        // The same create again changes nothing; other columns are refused.
        assert_eq!(m.apply(&Command::CreateStream(spec("a"))), Reply::Unchanged);
        let mut other = spec("a");
        other.time = "u".into();
        assert!(matches!(
            m.apply(&Command::CreateStream(other)),
            Reply::Refused(why) if why.contains("already in the cluster")
        ));
        // The primary lost: the other holder takes over, a new one joins.
        m.apply(&Command::Lost { id: 1 });
        assert_eq!(m.streams["a"].holders, vec![2, 3]);
        assert_eq!(m.streams["a"].ready, BTreeSet::from([2]));
        assert_eq!(m.streams["b"].holders, vec![3, 2]);
        // The new holder lost before it is ready: the primary goes on alone
        // until another member can hold it.
        m.apply(&Command::Lost { id: 3 });
        assert_eq!(m.streams["a"].holders, vec![2]);
        // `b`'s only ready holder is 3: it waits for it.
        assert_eq!(m.streams["b"].holders, vec![3, 2]);
        // Back: it holds again, ready once the primary says so.
        m.apply(&Command::Back { id: 3 });
        assert_eq!(m.streams["a"].holders, vec![2, 3]);
        assert_eq!(
            m.apply(&Command::StreamReady {
                name: "a".into(),
                member: 3
            }),
            Reply::Done
        );
        assert_eq!(m.streams["a"].ready, BTreeSet::from([2, 3]));
    }

    #[test]
    fn a_stream_whose_only_ready_holder_is_lost_waits_for_it() {
        let mut m = three();
        m.apply(&Command::CreateStream(spec("a")));
        m.apply(&Command::Lost { id: 2 });
        // Holder 3 replaces 2 but holds nothing yet.
        assert_eq!(m.streams["a"].holders, vec![1, 3]);
        m.apply(&Command::Lost { id: 1 });
        // 3 is not ready: 1 stays the primary until it is back.
        assert_eq!(m.streams["a"].holders, vec![1, 3]);
        m.apply(&Command::Back { id: 1 });
        assert_eq!(m.streams["a"].holders, vec![1, 3]);
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (1u64..5).prop_map(|id| Command::Lost { id }),
            (1u64..5).prop_map(|id| Command::Back { id }),
            (1u64..5).prop_map(|member| Command::StreamReady {
                name: "s".into(),
                member
            }),
        ]
    }

    proptest! {
        /// Whatever members come and go: the primary is always a member
        /// that was ready, holders are distinct, and there are never more
        /// than two.
        #[test]
        fn the_primary_is_always_a_ready_holder(commands in proptest::collection::vec(command(), 0..40)) {
            let mut m = three();
            m.apply(&Command::CreateStream(spec("s")));
            for c in &commands {
                m.apply(c);
                let s = &m.streams["s"];
                let primary = s.primary().unwrap();
                prop_assert!(s.ready.contains(&primary), "primary {primary} not ready: {s:?}");
                let distinct: BTreeSet<_> = s.holders.iter().collect();
                prop_assert_eq!(distinct.len(), s.holders.len());
                prop_assert!(s.holders.len() <= HOLDERS);
                prop_assert!(s.ready.iter().all(|r| s.holders.contains(r)));
            }
        }
    }
}
