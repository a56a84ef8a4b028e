//! Hot patching: a UDF stage's durable patch timeline.
//!
//! Every change to a running stage (a new module version, a rollback, a
//! runtime filter added or removed) is an
//! entry of its vertex's timeline, at the stage's input position where it took
//! effect: the number of input rows the stage had consumed. The order of a
//! stage's input rows is deterministic (one input, or the CTI merge of
//! several), so a vertex replaying from any snapshot applies each entry before
//! the same row as the original run did, and rewrites the same outputs.

use serde::{Deserialize, Serialize};

/// What changed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `weir udf deploy`.
    Deploy,
    /// `weir udf rollback`.
    Rollback,
    /// The stage's `on_trap = "rollback"` policy: the new version trapped.
    Trap(String),
    /// `weir job filter add`: rows the filter (canonical text) matches are
    /// dropped before the UDF from here on. The module stays.
    FilterAdd(String),
    /// `weir job filter remove`: the filter no longer applies. The module stays.
    FilterRemove(String),
}

impl Change {
    /// Whether it changes the module version (rather than the filters).
    pub fn is_module(&self) -> bool {
        !matches!(self, Change::FilterAdd(_) | Change::FilterRemove(_))
    }

    /// How history shows it.
    pub fn describe(&self) -> String {
        match self {
            Change::Deploy => "deploy".into(),
            Change::Rollback => "rollback".into(),
            Change::Trap(e) => format!("rollback on trap: {e}"),
            Change::FilterAdd(f) => format!("filter added: {f}"),
            Change::FilterRemove(f) => format!("filter removed: {f}"),
        }
    }
}

/// One entry of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// The stage's input position (rows consumed) where it took effect: rows
    /// below ran on the previous version, this row and later on `version`.
    pub position: u64,
    /// CTIs the vertex had written when it took effect.
    pub ctis: u64,
    /// The module version (SHA-256 hex) from here on.
    pub version: String,
    /// What changed and why.
    pub change: Change,
    /// When it took effect (Unix milliseconds; shown, never replayed).
    pub at_ms: u64,
}

impl Patch {
    /// Whether `other` is the same switch: the same change to the same
    /// version at the same position. When it was made (`at_ms`, a wall
    /// clock) differs between instances of a vertex that each made it.
    pub fn same(&self, other: &Patch) -> bool {
        self.position == other.position
            && self.ctis == other.ctis
            && self.version == other.version
            && self.change == other.change
    }
}

/// Whether timeline `longer` begins with every switch of `shorter`
/// ([`Patch::same`]).
pub fn extends(longer: &[Patch], shorter: &[Patch]) -> bool {
    longer.len() >= shorter.len() && shorter.iter().zip(longer).all(|(a, b)| a.same(b))
}

/// A stage's patch timeline: the job's module, then every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// The version the job was submitted with.
    pub original: String,
    /// The changes, in order.
    pub patches: Vec<Patch>,
}

impl Timeline {
    /// A timeline with no changes yet.
    pub fn new(original: &str) -> Timeline {
        Timeline {
            original: original.to_string(),
            patches: Vec::new(),
        }
    }

    /// The version in use after the first `n` changes.
    pub fn version_after(&self, n: usize) -> &str {
        self.patches[..n.min(self.patches.len())]
            .last()
            .map_or(&self.original, |p| &p.version)
    }

    /// The versions a rollback returns through, after the first `n` changes:
    /// a deploy pushes its version; a rollback to a version on the stack pops
    /// back to it (and pushes one that is not).
    pub fn stack(&self, n: usize) -> Vec<&str> {
        let mut stack = vec![self.original.as_str()];
        for p in &self.patches[..n.min(self.patches.len())] {
            match (&p.change, stack.iter().rposition(|v| *v == p.version)) {
                (Change::FilterAdd(_) | Change::FilterRemove(_), _) => {}
                (Change::Rollback | Change::Trap(_), Some(i)) => stack.truncate(i + 1),
                _ => stack.push(&p.version),
            }
        }
        stack
    }

    /// The version a rollback after the first `n` changes goes back to.
    pub fn previous(&self, n: usize) -> Option<&str> {
        let stack = self.stack(n);
        (stack.len() >= 2).then(|| stack[stack.len() - 2])
    }

    /// The runtime filters in effect after the first `n` changes, in the
    /// order they were added.
    pub fn filters(&self, n: usize) -> Vec<&str> {
        let mut active: Vec<&str> = Vec::new();
        for p in &self.patches[..n.min(self.patches.len())] {
            match &p.change {
                Change::FilterAdd(f) => active.push(f),
                Change::FilterRemove(f) => active.retain(|a| a != f),
                _ => {}
            }
        }
        active
    }

    /// Every version the timeline names, oldest first, each once.
    pub fn versions(&self) -> Vec<&str> {
        let mut out = vec![self.original.as_str()];
        for p in &self.patches {
            if !out.contains(&p.version.as_str()) {
                out.push(&p.version);
            }
        }
        out
    }
}

/// A change asked for and accepted, not yet in the timeline: it is durable
/// from the moment the request is acknowledged, and the stage's vertex takes
/// it at its next CTI (after any asked for before it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    /// Numbers requests of a stage in the order they were accepted.
    pub id: u64,
    /// The module version (full SHA-256 hex) for a module change; empty for
    /// a filter change.
    pub version: String,
    /// The change.
    pub change: Change,
    /// When it was accepted (Unix milliseconds; shown only).
    pub at_ms: u64,
}

/// A stage's accepted changes waiting for a CTI, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// The id the next request gets.
    pub next_id: u64,
    /// The waiting requests, in order.
    pub waiting: Vec<Requested>,
}

impl Queue {
    /// Appends `change` and returns its id.
    pub fn push(&mut self, version: String, change: Change) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push(Requested {
            id,
            version,
            change,
            at_ms: now_ms(),
        });
        id
    }

    /// Removes the requests `ids` (taken into the timeline, or refused).
    pub fn settle(&mut self, ids: &[u64]) {
        self.waiting.retain(|r| !ids.contains(&r.id));
    }

    /// The filters in effect once the timeline's `active` filters have been
    /// changed by every waiting request, in order.
    pub fn filters_after(&self, mut active: Vec<String>) -> Vec<String> {
        for r in &self.waiting {
            match &r.change {
                Change::FilterAdd(f) => active.push(f.clone()),
                Change::FilterRemove(f) => active.retain(|a| a != f),
                _ => {}
            }
        }
        active
    }
}

/// Milliseconds since the Unix epoch (for display only).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(version: &str, change: Change) -> Patch {
        Patch {
            position: 0,
            ctis: 0,
            version: version.into(),
            change,
            at_ms: 0,
        }
    }

    /// Two instances of a vertex that made the same switches at other
    /// moments have the same timeline; one switch elsewhere is another.
    #[test]
    fn a_timeline_extends_another_by_its_switches_not_their_clock() {
        let mine = vec![patch("v2", Change::Deploy), patch("v1", Change::Rollback)];
        let mut theirs = mine.clone();
        theirs[0].at_ms = 99;
        assert!(extends(&theirs, &mine) && extends(&mine, &theirs));
        assert!(extends(&mine, &mine[..1]) && !extends(&mine[..1], &mine));
        theirs[1].position = 7;
        assert!(!extends(&theirs, &mine) && extends(&theirs, &mine[..1]));
    }

    #[test]
    fn queued_requests_keep_their_order_and_settle_by_id() {
        let mut q = Queue::default();
        let a = q.push(String::new(), Change::FilterRemove("a = 1".into()));
        let b = q.push(String::new(), Change::FilterAdd("b = 2".into()));
        let c = q.push("v2".into(), Change::Deploy);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(
            q.filters_after(vec!["a = 1".into(), "c = 3".into()]),
            vec!["c = 3".to_string(), "b = 2".to_string()]
        );
        q.settle(&[a, b]);
        assert_eq!(q.waiting.len(), 1);
        assert_eq!(q.waiting[0].change, Change::Deploy);
        // Ids are never reused, even once every request is settled.
        q.settle(&[c]);
        assert_eq!(q.push(String::new(), Change::Rollback), 3);
    }

    #[test]
    fn rollbacks_walk_back_through_deploys() {
        let mut t = Timeline::new("v1");
        assert_eq!(t.previous(0), None);
        t.patches.push(patch("v2", Change::Deploy));
        t.patches.push(patch("v3", Change::Deploy));
        assert_eq!(t.version_after(2), "v3");
        assert_eq!(t.previous(2), Some("v2"));
        t.patches.push(patch("v2", Change::Rollback));
        assert_eq!(t.version_after(3), "v2");
        assert_eq!(t.previous(3), Some("v1"));
        t.patches.push(patch("v1", Change::Trap("boom".into())));
        assert_eq!(t.previous(4), None);
        // Deploying an old version again is a deploy, not a rollback.
        t.patches.push(patch("v3", Change::Deploy));
        assert_eq!(t.stack(5), vec!["v1", "v3"]);
        assert_eq!(t.version_after(1), "v2");
        assert_eq!(t.versions(), vec!["v1", "v2", "v3"]);
        // Filters leave the module and the rollback stack alone.
        t.patches
            .push(patch("v3", Change::FilterAdd("a = 1".into())));
        t.patches
            .push(patch("v3", Change::FilterAdd("b = 2".into())));
        t.patches
            .push(patch("v3", Change::FilterRemove("a = 1".into())));
        assert_eq!(t.stack(8), vec!["v1", "v3"]);
        assert_eq!(t.previous(8), Some("v1"));
        assert_eq!(t.filters(7), vec!["a = 1", "b = 2"]);
        assert_eq!(t.filters(8), vec!["b = 2"]);
        assert_eq!(t.filters(5), Vec::<&str>::new());
    }
}
