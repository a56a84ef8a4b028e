//! How far the other members' copies of the streams written here held them
//! when they began pulling from this member. A vertex that another instance
//! ran before (on a member lost, drained or left behind) may stand behind
//! what a reader elsewhere already copied of that instance's output; a
//! change queued for it must not be made there, or the reader's copy would
//! hold the old version's entries where the vertex writes the new one's,
//! and the reader would go on from the new ones as if they followed. So a
//! placed vertex takes no change until every member that copies its output
//! pulls from this member, and then only past where each began
//! ([`Node::release_changes`]). A reader's copy grows from here on, by the
//! entries the vertex writes here.
//!
//! What a reader copied may lie further than the vertex reading it
//! writes again, too: a vertex that resumed here from an older snapshot
//! while a copy of its output elsewhere (a vertex's there that stayed, or
//! ran on) holds more of what its earlier instance wrote. Until it has
//! written that far again, its inputs must be what its earlier instance
//! read, so the writers of its inputs make no change either: its member
//! pulls them `behind`, and such a pull counts as a copy that has not said
//! how far it holds ([`Pulled::held`]). Vertices on this member that read
//! it are asked the same way, and so on up the job.
//!
//! The other way, it keeps which of this member's copies a fetch fills and
//! whether a pull of each is open: a duplicate reading a copy whose pulls
//! fail has not caught up, whatever its lag behind the copy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use weir_cluster::metadata::Metadata;

use super::placed::record_of;
use super::*;
use crate::jobs::Writing;

/// The copies of the streams written here, and the pulls open now.
#[derive(Debug, Default)]
pub(super) struct Pulled {
    /// Stream → the readers (other members' copies) that pull it from
    /// here, as the job's wiring says.
    expected: Mutex<HashMap<String, BTreeSet<String>>>,
    /// (stream, reader) → where its open pulls began (the furthest), how
    /// many are open, and how many of those are `behind`.
    open: Mutex<HashMap<(String, String), OpenPulls>>,
    /// This member's copies whose pulls go `behind`: a vertex here that
    /// reads one writes again what a copy of its output holds.
    behind: Mutex<BTreeSet<String>>,
    /// The runs of the vertices here that have written, once, as far as
    /// every copy of their output held it ([`Writing::run`]).
    caught_up: Mutex<BTreeSet<u64>>,
    /// This member's copies → how many fetches fill each, and how many of
    /// their pulls are open.
    fetching: Mutex<HashMap<String, (usize, usize)>>,
}

/// Where a reader's open pulls of a stream began (the furthest), how many
/// are open, and how many of those are `behind`.
type OpenPulls = (u64, usize, usize);

/// A fetch filling a copy here (`pull: false`) or its open pull, counted
/// until dropped.
pub(super) struct Fetching<'a> {
    pulled: &'a Pulled,
    stream: String,
    pull: bool,
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        let mut fetching = lock(&self.pulled.fetching);
        if let Some((fetches, pulls)) = fetching.get_mut(&self.stream) {
            match self.pull {
                true => *pulls -= 1,
                false => *fetches -= 1,
            }
            if *fetches == 0 && *pulls == 0 {
                fetching.remove(&self.stream);
            }
        }
    }
}

/// An open pull, counted until dropped.
pub(super) struct Open<'a> {
    pulled: &'a Pulled,
    key: (String, String),
    behind: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let mut open = lock(&self.pulled.open);
        if let Some((_, n, behind)) = open.get_mut(&self.key) {
            *n -= 1;
            *behind -= usize::from(self.behind);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl Pulled {
    /// The readers that pull `stream` from this member now.
    pub(super) fn expect(&self, stream: &str, readers: BTreeSet<String>) {
        lock(&self.expected).insert(stream.to_string(), readers);
    }

    /// `reader` began pulling `stream` from seq `from`: it holds every
    /// entry below (and, `behind`, a vertex reading it writes again what
    /// was copied further).
    pub(super) fn open(&self, stream: &str, reader: &str, from: u64, behind: bool) -> Open<'_> {
        let key = (stream.to_string(), reader.to_string());
        let mut open = lock(&self.open);
        let slot = open.entry(key.clone()).or_insert((from, 0, 0));
        slot.0 = slot.0.max(from);
        slot.1 += 1;
        slot.2 += usize::from(behind);
        Open {
            pulled: self,
            key,
            behind,
        }
    }

    /// Whether this member's copy `stream` pulls `behind` now.
    pub(super) fn pulls_behind(&self, stream: &str) -> bool {
        lock(&self.behind).contains(stream)
    }

    /// A fetch fills this member's copy `stream` (`pull: false`), or one
    /// of its pulls is open.
    pub(super) fn fetching(&self, stream: &str, pull: bool) -> Fetching<'_> {
        let mut fetching = lock(&self.fetching);
        let (fetches, pulls) = fetching.entry(stream.to_string()).or_default();
        match pull {
            true => *pulls += 1,
            false => *fetches += 1,
        }
        Fetching {
            pulled: self,
            stream: stream.to_string(),
            pull,
        }
    }

    /// Whether a fetch fills this member's copy `stream` while none of its
    /// pulls is open: the copy stands still, whatever the writer holds.
    pub(super) fn stalled(&self, stream: &str) -> bool {
        lock(&self.fetching)
            .get(stream)
            .is_some_and(|(fetches, pulls)| *fetches > 0 && *pulls == 0)
    }

    /// How far every expected copy of `stream` held it when its pull
    /// began (0 with none), or `None` while one of them has no pull open.
    fn held(&self, stream: &str) -> Option<u64> {
        self.held_by(stream, |_| true)
    }

    /// [`Pulled::held`], of the expected copies whose readers `counts`.
    fn held_by(&self, stream: &str, counts: impl Fn(&str) -> bool) -> Option<u64> {
        let expected = lock(&self.expected);
        let open = lock(&self.open);
        expected
            .get(stream)
            .into_iter()
            .flatten()
            .filter(|reader| counts(reader))
            .try_fold(0, |most, reader| {
                let (from, ..) = open.get(&(stream.to_string(), reader.clone()))?;
                Some(most.max(*from))
            })
    }

    /// Whether a pull of `stream` open now is `behind`: a vertex reading
    /// the copy writes again what was copied further, and needs what it
    /// reads next to be what its earlier instance read.
    fn pulled_behind(&self, stream: &str) -> bool {
        lock(&self.open)
            .iter()
            .any(|((s, _), (_, _, behind))| s == stream && *behind > 0)
    }

    /// How far the copies of `stream` (a vertex's output or dead letters
    /// written here) hold it, as the vertex may take a change past it:
    /// `None` while one has not said, or pulls `behind`.
    fn copies_hold(&self, stream: &str) -> Option<u64> {
        self.held(stream).filter(|_| !self.pulled_behind(stream))
    }

    /// Whether `w`, a vertex running here whose output stream is
    /// `stream`, writes again what its stream here held when it started,
    /// or what a reader's copy elsewhere holds, or what a vertex reading it
    /// needs as its earlier instance read it (a pull `behind`); before
    /// every reader's copy has said, only a run that has not yet caught up
    /// with them counts. A backup's copy is no reader's: no vertex reads
    /// it, and should the vertex resume there, what the copy holds past
    /// the snapshot is what it must write again, entry for entry (or it
    /// fails, naming the seq).
    fn writes_behind(&self, stream: &str, w: &Writing) -> bool {
        let readers = |reader: &str| !reader.starts_with("backup/");
        let behind = w.next < w.rewrites_below
            || self.pulled_behind(stream)
            || match self.held_by(stream, readers) {
                Some(copied) => w.next < copied,
                None => !lock(&self.caught_up).contains(&w.run),
            };
        if !behind {
            lock(&self.caught_up).insert(w.run);
        }
        behind
    }
}

impl Node {
    /// Tells each vertex of a placed job here (not the followers: they
    /// make no change of their own) how far the other members' copies of
    /// its output and dead letters hold them, or that one has not said.
    pub(super) fn release_changes(&self, metadata: &Metadata) {
        let Some(me) = self.cluster.get().map(|c| c.id()) else {
            return;
        };
        let (mut behind, mut runs) = (BTreeSet::new(), BTreeSet::new());
        for (name, (id, here, _)) in self.jobs.placed() {
            let Some(job) = metadata.jobs.get(&name).filter(|j| j.id == id) else {
                continue;
            };
            let record = record_of(job, me);
            let follows = record.follows.clone().unwrap_or_default();
            // The streams read by a vertex here that writes again what
            // was copied further: their writers here make no change, nor
            // (pulled `behind`) those on other members.
            let mut held_back = BTreeSet::new();
            for w in self.jobs.writing(&name) {
                runs.insert(w.run);
                if !follows.contains(&w.vertex)
                    && self.pulled.writes_behind(&record.stream(&w.vertex), &w)
                {
                    held_back.extend(w.reads);
                }
            }
            for vertex in here.iter().filter(|v| !follows.contains(*v)) {
                let stream = record.stream(vertex);
                let held = self.pulled.copies_hold(&stream).and_then(|output| {
                    let dead = self.pulled.copies_hold(&format!("{stream}.dead"))?;
                    Some((output, dead))
                });
                let held = held.filter(|_| !held_back.contains(&stream));
                self.jobs.copies_hold(&name, vertex, held);
            }
            behind.extend(held_back);
        }
        lock(&self.pulled.caught_up).retain(|run| runs.contains(run));
        *lock(&self.pulled.behind) = behind;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream's copies hold it as far as the furthest began, once each
    /// expected one has a pull open; one closed or new says nothing yet.
    #[test]
    fn every_expected_copy_must_pull_and_the_furthest_counts() {
        let p = Pulled::default();
        assert_eq!(p.held("s"), Some(0), "a stream nobody copies");
        p.expect("s", ["a".to_string(), "b".to_string()].into());
        assert_eq!(p.held("s"), None);
        let a = p.open("s", "a", 40, false);
        assert_eq!(p.held("s"), None, "b has not pulled");
        let b = p.open("s", "b", 25, false);
        assert_eq!(p.held("s"), Some(40));
        let again = p.open("s", "b", 55, false);
        drop(b);
        assert_eq!(p.held("s"), Some(55), "b's newer pull is open");
        drop(again);
        assert_eq!(p.held("s"), None, "b's pulls all closed");
        drop(a);
        let _other = p.open("t", "a", 99, false);
        assert_eq!(p.held("s"), None);
        p.expect("s", ["c".to_string()].into());
        let _c = p.open("s", "c", 7, false);
        assert_eq!(p.held("s"), Some(7), "the wiring changed");
    }

    /// A pull `behind` says nothing of how far its copy holds the stream
    /// until it is pulled again without; a vertex counts as behind while
    /// it writes below what its stream held when it started or what a copy
    /// holds, and before every copy has said only until it caught up once.
    #[test]
    fn a_pull_behind_holds_back_every_change_and_a_vertex_is_behind_until_it_caught_up() {
        let p = Pulled::default();
        let w = |next, rewrites_below, run| Writing {
            vertex: "v".into(),
            next,
            rewrites_below,
            reads: Vec::new(),
            run,
        };
        p.expect("s", ["a".to_string()].into());
        let behind = p.open("s", "a", 40, true);
        assert_eq!(
            p.copies_hold("s"),
            None,
            "its reader writes again what was copied"
        );
        assert!(
            p.writes_behind("s", &w(50, 0, 9)),
            "its reader needs what it read"
        );
        let again = p.open("s", "a", 45, false);
        assert_eq!(p.copies_hold("s"), None, "one of its pulls is still behind");
        drop(behind);
        assert_eq!(p.copies_hold("s"), Some(45));
        assert!(!p.writes_behind("s", &w(50, 0, 9)));
        drop(again);
        assert!(p.writes_behind("s", &w(10, 0, 1)), "no copy has said yet");
        assert!(p.writes_behind("s", &w(10, 20, 1)), "its stream held more");
        let _a = p.open("s", "a", 30, false);
        assert!(p.writes_behind("s", &w(20, 20, 1)), "a copy holds more");
        assert!(!p.writes_behind("s", &w(30, 20, 1)));
        drop(_a);
        assert!(
            !p.writes_behind("s", &w(31, 20, 1)),
            "a copy pulling again says nothing new of a run that caught up"
        );
        assert!(p.writes_behind("s", &w(0, 0, 2)), "a new run");
    }

    /// A copy a fetch fills stands still while no pull of it is open.
    #[test]
    fn a_fetched_copy_without_an_open_pull_stands_still() {
        let p = Pulled::default();
        assert!(!p.stalled("s"), "a stream no fetch fills");
        let fetch = p.fetching("s", false);
        assert!(p.stalled("s"));
        let pull = p.fetching("s", true);
        assert!(!p.stalled("s"));
        drop(pull);
        assert!(p.stalled("s"), "its pull failed");
        drop(fetch);
        assert!(!p.stalled("s"), "the fetch ended");
    }
}
