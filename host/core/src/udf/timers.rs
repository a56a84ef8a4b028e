//! Event-time timers of a timed reducer's keys. A key's timers are kept in
//! its state, under the reserved name [`TIMERS`], so they are checkpointed,
//! restored, adopted by a patch and left unchanged by a failed call exactly
//! as the rest of its state; the store also indexes them by time, so a CTI
//! finds the timers it fires without scanning the keys.

use std::collections::BTreeMap;

use super::{KeyGroups, KeyedStore};

/// The state name a key's timers are kept under: a sorted list of times.
/// Guests cannot write it through the `state` interface.
pub const TIMERS: &str = "\u{0}timers";

/// A key's timers, as kept under [`TIMERS`]. Bytes that do not decode hold
/// no timer.
pub fn decode_timers(bytes: &[u8]) -> Vec<i64> {
    postcard::from_bytes(bytes).unwrap_or_default()
}

/// The value kept under [`TIMERS`] for these times (sorted, without repeats).
pub fn encode_timers(at: &[i64]) -> Vec<u8> {
    postcard::to_allocvec(at).expect("a list of integers always encodes")
}

/// Timers that fired: the keys they belong to and, per timer, its key's
/// group and time, ordered by time then key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fired {
    /// Each key once (`offsets`, `data`) and per timer its key (`groups`).
    pub keys: KeyGroups,
    /// Per timer, its time.
    pub at: Vec<i64>,
}

impl Fired {
    /// The number of timers.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no timer fired.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The `i`th timer alone.
    pub fn one(&self, i: usize) -> Fired {
        let key = self.keys.key(self.keys.groups[i] as usize);
        Fired {
            keys: KeyGroups {
                offsets: vec![0, key.len() as u32],
                data: key.to_vec(),
                groups: vec![0],
            },
            at: vec![self.at[i]],
        }
    }

    /// The `i`th timer's key.
    pub fn key(&self, i: usize) -> &[u8] {
        self.keys.key(self.keys.groups[i] as usize)
    }
}

impl KeyedStore {
    /// The key's timers, as its state holds them.
    fn key_timers(&self, key: &[u8]) -> Vec<i64> {
        self.state
            .get(key)
            .and_then(|names| names.get(TIMERS))
            .map(|b| decode_timers(b))
            .unwrap_or_default()
    }

    /// Rebuilds the index from the state (after a restore).
    pub(super) fn index_timers(&mut self) {
        self.timers.clear();
        let keys: Vec<Vec<u8>> = self
            .state
            .iter()
            .filter(|(_, names)| names.contains_key(TIMERS))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.index_key_timers(&key);
        }
    }

    /// Takes the key's timers out of the index (before its state changes).
    pub(super) fn unindex_timers(&mut self, key: &[u8]) {
        for at in self.key_timers(key) {
            self.timers.remove(&(at, key.to_vec()));
        }
    }

    /// Puts the key's timers, as its state now holds them, in the index.
    pub(super) fn index_key_timers(&mut self, key: &[u8]) {
        for at in self.key_timers(key) {
            self.timers.insert((at, key.to_vec()));
        }
    }

    /// Replaces the key's timers with `at`, in its state and the index.
    fn put_timers(&mut self, key: &[u8], mut at: Vec<i64>) {
        at.sort_unstable();
        at.dedup();
        let value = (!at.is_empty()).then(|| encode_timers(&at));
        self.apply([(key.to_vec(), BTreeMap::from([(TIMERS.to_string(), value)]))]);
    }

    /// The earliest timer, if any.
    pub fn next_timer(&self) -> Option<i64> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// How many timers are set.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Removes and returns the timers at or before `cti`, at most `limit` of
    /// them, by time then key.
    pub fn take_due(&mut self, cti: i64, limit: usize) -> Fired {
        let due: Vec<(i64, Vec<u8>)> = self
            .timers
            .iter()
            .take_while(|(at, _)| *at <= cti)
            .take(limit)
            .cloned()
            .collect();
        let mut fired = Fired {
            keys: KeyGroups {
                offsets: vec![0],
                data: Vec::new(),
                groups: Vec::with_capacity(due.len()),
            },
            at: Vec::with_capacity(due.len()),
        };
        let mut groups: BTreeMap<&[u8], u32> = BTreeMap::new();
        for (at, key) in &due {
            let next = groups.len() as u32;
            let g = *groups.entry(key.as_slice()).or_insert_with(|| {
                fired.keys.data.extend_from_slice(key);
                fired.keys.offsets.push(fired.keys.data.len() as u32);
                next
            });
            fired.keys.groups.push(g);
            fired.at.push(*at);
        }
        let mut left: BTreeMap<&[u8], Vec<i64>> = BTreeMap::new();
        for (at, key) in &due {
            left.entry(key.as_slice())
                .or_insert_with(|| self.key_timers(key))
                .retain(|t| t != at);
        }
        for (key, at) in left {
            self.put_timers(key, at);
        }
        fired
    }

    /// Sets again the timers of a call that failed.
    pub fn restore_timers(&mut self, fired: &Fired) {
        let mut keys: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
        for (i, &at) in fired.at.iter().enumerate() {
            let key = fired.key(i).to_vec();
            let list = match keys.get_mut(&key) {
                Some(list) => list,
                None => {
                    let list = self.key_timers(&key);
                    keys.entry(key).or_insert(list)
                }
            };
            list.push(at);
        }
        for (key, at) in keys {
            self.put_timers(&key, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(store: &mut KeyedStore, key: &str, at: &[i64]) {
        store.apply([(
            key.as_bytes().to_vec(),
            BTreeMap::from([(TIMERS.to_string(), Some(encode_timers(at)))]),
        )]);
    }

    /// Timers fire by time then key, at most `limit` at once, and leave the
    /// state; a failed call's timers are set again; the index follows a
    /// restore of the state.
    #[test]
    fn due_timers_leave_by_time_then_key_and_come_back_after_a_failure() {
        let mut store = KeyedStore::default();
        set(&mut store, "b", &[10, 30]);
        set(&mut store, "a", &[10, 20]);
        store.apply([(
            b"a".to_vec(),
            BTreeMap::from([("state".to_string(), Some(vec![1]))]),
        )]);
        assert_eq!((store.next_timer(), store.timer_count()), (Some(10), 4));
        let fired = store.take_due(20, 2);
        assert_eq!(fired.at, vec![10, 10]);
        assert_eq!((fired.key(0), fired.key(1)), (&b"a"[..], &b"b"[..]));
        assert_eq!(store.timer_count(), 2);
        assert_eq!(
            decode_timers(&store.get()[&b"a".to_vec()][TIMERS]),
            vec![20]
        );
        store.restore_timers(&fired);
        assert_eq!(store.timer_count(), 4);
        let all = store.take_due(i64::MAX, usize::MAX);
        assert_eq!(all.at, vec![10, 10, 20, 30]);
        // A key with no timers left keeps its other state; one with nothing
        // left is gone.
        assert!(!store.get()[&b"a".to_vec()].contains_key(TIMERS));
        assert!(!store.get().contains_key(&b"b".to_vec()));
        store.restore_timers(&all);
        let saved = store.get().clone();
        let mut restored = KeyedStore::default();
        restored.set(saved);
        assert_eq!(restored.take_due(25, usize::MAX).at, vec![10, 10, 20]);
    }
}
