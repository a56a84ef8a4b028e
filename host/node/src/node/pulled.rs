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
//! The other way, it keeps which of this member's copies a fetch fills and
//! whether a pull of each is open: a duplicate reading a copy whose pulls
//! fail has not caught up, whatever its lag behind the copy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use weir_cluster::metadata::Metadata;

use super::placed::record_of;
use super::*;

/// The copies of the streams written here, and the pulls open now.
#[derive(Debug, Default)]
pub(super) struct Pulled {
    /// Stream → the readers (other members' copies) that pull it from
    /// here, as the job's wiring says.
    expected: Mutex<HashMap<String, BTreeSet<String>>>,
    /// (stream, reader) → where its open pulls began (the furthest), and
    /// how many are open.
    open: Mutex<HashMap<(String, String), (u64, usize)>>,
    /// This member's copies → how many fetches fill each, and how many of
    /// their pulls are open.
    fetching: Mutex<HashMap<String, (usize, usize)>>,
}

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
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let mut open = lock(&self.pulled.open);
        if let Some((_, n)) = open.get_mut(&self.key) {
            *n -= 1;
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
    /// entry below.
    pub(super) fn open(&self, stream: &str, reader: &str, from: u64) -> Open<'_> {
        let key = (stream.to_string(), reader.to_string());
        let mut open = lock(&self.open);
        let slot = open.entry(key.clone()).or_insert((from, 0));
        slot.0 = slot.0.max(from);
        slot.1 += 1;
        Open { pulled: self, key }
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
        let expected = lock(&self.expected);
        let open = lock(&self.open);
        expected
            .get(stream)
            .into_iter()
            .flatten()
            .try_fold(0, |most, reader| {
                let (from, _) = open.get(&(stream.to_string(), reader.clone()))?;
                Some(most.max(*from))
            })
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
        for (name, (id, here, _)) in self.jobs.placed() {
            let Some(job) = metadata.jobs.get(&name).filter(|j| j.id == id) else {
                continue;
            };
            let record = record_of(job, me);
            let follows = record.follows.clone().unwrap_or_default();
            for vertex in here.iter().filter(|v| !follows.contains(*v)) {
                let stream = record.stream(vertex);
                let held = self.pulled.held(&stream).and_then(|output| {
                    let dead = self.pulled.held(&format!("{stream}.dead"))?;
                    Some((output, dead))
                });
                self.jobs.copies_hold(&name, vertex, held);
            }
        }
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
        let a = p.open("s", "a", 40);
        assert_eq!(p.held("s"), None, "b has not pulled");
        let b = p.open("s", "b", 25);
        assert_eq!(p.held("s"), Some(40));
        let again = p.open("s", "b", 55);
        drop(b);
        assert_eq!(p.held("s"), Some(55), "b's newer pull is open");
        drop(again);
        assert_eq!(p.held("s"), None, "b's pulls all closed");
        drop(a);
        let _other = p.open("t", "a", 99);
        assert_eq!(p.held("s"), None);
        p.expect("s", ["c".to_string()].into());
        let _c = p.open("s", "c", 7);
        assert_eq!(p.held("s"), Some(7), "the wiring changed");
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
