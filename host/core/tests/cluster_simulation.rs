//! The simulation of the core (`simulation.rs`) over several members: the
//! job's rVertices run on members with stores of their own, on a schedule
//! drawn from a seed, under the cluster's data-plane rules:
//! - a vertex reads a stream written on another member from a copy in its
//!   own member's store, which pulls the writer's durable entries from the
//!   copy's next seq (pulls and their answers are delayed, lost, and
//!   answered after the writer moved; a resent entry is a duplicate);
//! - every vertex has a backup member that copies its output streams and
//!   stores its snapshot (with its whole keyed state) only once its copies
//!   hold everything the snapshot says the vertex wrote; the coordinator
//!   counts the stored snapshot's input positions;
//! - a member collects a stream only below what every reader's counted
//!   snapshot still reads and every copy still lacks;
//! - a new backup's copy begins at what the writer's member holds then;
//! - the ingest streams are held whole by two members.
//!
//! Faults: members crash (what was not durable is lost, a prefix of it
//! kept) and restart on their disks, are cut off for a while (their
//! vertices write nothing meanwhile, as without a lease), and are lost with
//! their disk, by a crash or by a partition longer than the heartbeat
//! timeout, one at a time: a loss comes only while every vertex's backup
//! holds a snapshot of it (or none of it was ever counted) and both holders
//! of each ingest stream hold it whole, as `weir cluster status` reports
//! protection. A lost member's vertices resume on their backups from the
//! stored snapshots; every vertex whose backup was lost gets a new one; a
//! new, empty member joins in the lost one's place.
//!
//! Checked: every entry any member makes durable, on any stream, is the
//! entry the uninterrupted run of the job on one node (`simulation.rs`)
//! writes at that seq, no copy ever needs an entry that no member holds,
//! and once every vertex has finished, each stream holds every entry that
//! run writes. A failure prints its seed.
//!
//! `WEIR_SIM_SEEDS` sets how many seeds run (default 64); `WEIR_SIM_SEED`
//! runs one.

use std::collections::BTreeMap;
use std::time::Instant;

use weir_core::entry::Entry;
use weir_core::vertex::{Vertex, VertexSnapshot};

mod sim;

use sim::*;

/// Members at the start; one lost is replaced by a new, empty one.
const MEMBERS: usize = 3;
/// Losses of a member with its disk in one schedule, at most.
const LOSSES: u32 = 3;
/// Steps a member may be cut off before the others declare it lost.
const LOST_AFTER: u64 = 60;
/// Steps a schedule may take.
const STEPS: u64 = 400_000;

/// A member: its store (what it wrote, what of that is durable, and the
/// writes not yet durable, in the committer's order) and the vertices it
/// runs.
struct Member {
    up: bool,
    /// Steps it stays cut off, and how long it has been.
    cut: u64,
    cut_for: u64,
    view: View,
    safe: View,
    pending: Vec<Op>,
    running: BTreeMap<usize, Vertex>,
}

impl Member {
    fn new(view: View) -> Member {
        Member {
            up: true,
            cut: 0,
            cut_for: 0,
            safe: view.clone(),
            view,
            pending: Vec::new(),
            running: BTreeMap::new(),
        }
    }

    fn reachable(&self) -> bool {
        self.up && self.cut == 0
    }

    fn write(&mut self, op: Op) -> Result<(), String> {
        self.view.apply(&op)?;
        self.pending.push(op);
        Ok(())
    }

    /// Makes the first `n` pending writes durable; `seen` records their
    /// entries.
    fn commit(&mut self, n: usize, seen: &mut Written) -> Result<(), String> {
        for op in self.pending.drain(..n) {
            self.safe.apply(&op)?;
            if let Op::Put { stream, seq, bytes } = &op {
                match seen[*stream].get(seq) {
                    Some(held) if held != bytes => {
                        return Err(format!(
                            "stream {stream} seq {seq}: made durable with other bytes than another member's"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        seen[*stream].insert(*seq, bytes.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// The first seq at or after `from` that its store lacks of `stream`.
    fn next(&self, stream: usize, from: u64) -> u64 {
        next_in(&self.view, stream, from)
    }
}

fn next_in(view: &View, stream: usize, from: u64) -> u64 {
    let mut seq = from.max(view.low[stream]);
    while view.streams[stream].contains_key(&seq) {
        seq += 1;
    }
    seq
}

/// The coordinator's metadata: where each vertex runs, its backup, and
/// what the backup stored.
struct Meta {
    at: Vec<usize>,
    backup: Vec<usize>,
    /// Where the backup's copies of the vertex's output and dead-letter
    /// streams begin.
    begin: Vec<[u64; 2]>,
    /// The backup stored a snapshot.
    ready: Vec<bool>,
    /// The input positions of the latest snapshot a backup stored.
    counted: Vec<Option<Vec<u64>>>,
    /// Per ingest stream: its holders, the primary first.
    holders: [Vec<usize>; 2],
}

/// What a schedule did.
#[derive(Default, Debug)]
struct Counts {
    crashes: u64,
    cuts: u64,
    losses: u64,
    moves: u64,
    stored: u64,
    collected: u64,
}

/// A pull's answer: to member, stream, entries.
type Answer = (usize, usize, Vec<(u64, Vec<u8>)>);

struct Cluster<'a> {
    job: Job,
    inputs: &'a [Vec<Entry>],
    members: Vec<Member>,
    meta: Meta,
    seen: Written,
    /// Pulled entries on their way.
    flight: Vec<Answer>,
    rng: Rng,
    counts: Counts,
}

fn is_ingest(stream: usize) -> bool {
    stream == INPUT_A || stream == INPUT_B
}

impl<'a> Cluster<'a> {
    fn new(inputs: &'a [Vec<Entry>], seed: u64) -> Cluster<'a> {
        let job = Job::new();
        let mut rng = Rng(seed);
        let n = job.wiring.len();
        let holders = [vec![0, 1], vec![1, 2]];
        let members: Vec<Member> = (0..MEMBERS)
            .map(|m| {
                let held: Vec<usize> = (0..2).filter(|s| holders[*s].contains(&m)).collect();
                Member::new(View::holding(inputs, &held))
            })
            .collect();
        let at: Vec<usize> = (0..n).map(|_| rng.below(MEMBERS as u64) as usize).collect();
        let backup = at
            .iter()
            .map(|&a| (a + 1 + rng.below(MEMBERS as u64 - 1) as usize) % MEMBERS)
            .collect();
        let mut cluster = Cluster {
            inputs,
            members,
            meta: Meta {
                at,
                backup,
                begin: vec![[0, 0]; n],
                ready: vec![false; n],
                counted: vec![None; n],
                holders,
            },
            seen: vec![BTreeMap::new(); STREAMS],
            flight: Vec::new(),
            rng,
            counts: Counts::default(),
            job,
        };
        for v in 0..n {
            cluster.start(v);
        }
        cluster
    }

    /// Starts vertex `v` on its member from what the member's store holds.
    fn start(&mut self, v: usize) {
        let m = self.meta.at[v];
        let resume = self.members[m].view.resume(v, self.job.wiring[v].0.len());
        let vertex = self.job.vertex(v, resume);
        self.members[m].running.insert(v, vertex);
    }

    /// The vertex writing `stream` and which of its streams it is (0: its
    /// output, 1: its dead letters).
    fn writer(&self, stream: usize) -> (usize, usize) {
        self.job
            .wiring
            .iter()
            .enumerate()
            .find_map(|(v, (_, out, dead))| {
                (*out == stream)
                    .then_some((v, 0))
                    .or((*dead == stream).then_some((v, 1)))
            })
            .expect("a written stream")
    }

    /// The vertices reading `stream`, with the input it is to each.
    fn readers(&self, stream: usize) -> Vec<(usize, usize)> {
        let mut readers = Vec::new();
        for (v, (ins, _, _)) in self.job.wiring.iter().enumerate() {
            for (i, s) in ins.iter().enumerate() {
                if *s == stream {
                    readers.push((v, i));
                }
            }
        }
        readers
    }

    /// The member a copy of `stream` pulls from: the ingest stream's
    /// primary, or the member running its writer.
    fn source(&self, stream: usize) -> usize {
        match is_ingest(stream) {
            true => self.meta.holders[stream][0],
            false => self.meta.at[self.writer(stream).0],
        }
    }

    /// The lowest seq member `m`'s copy of `stream` needs, if `m` keeps
    /// a copy that pulls: for a reader running there, from its position;
    /// for the writer's backup, from where its copy began; for an ingest
    /// stream's second holder, whole.
    fn want(&self, m: usize, stream: usize) -> Option<u64> {
        if !self.members[m].up || self.source(stream) == m {
            return None;
        }
        let mut want: Option<u64> = None;
        let mut need = |seq: u64| want = Some(want.map_or(seq, |w: u64| w.min(seq)));
        if is_ingest(stream) {
            if self.meta.holders[stream].contains(&m) {
                need(0);
            }
        } else {
            let (w, k) = self.writer(stream);
            if self.meta.backup[w] == m {
                need(self.meta.begin[w][k]);
            }
        }
        for (r, i) in self.readers(stream) {
            if let Some(vertex) = self.members[m].running.get(&r) {
                need(vertex.position().inputs[i]);
            }
        }
        want
    }

    /// Below what `stream` may be collected: what the readers' counted
    /// snapshots still read (all of it for a reader none is counted of),
    /// and nothing a copy still lacks.
    fn collectable(&self, stream: usize) -> u64 {
        let mut below = u64::MAX;
        for (r, i) in self.readers(stream) {
            below = below.min(self.meta.counted[r].as_ref().map_or(0, |q| q[i]));
        }
        for m in 0..self.members.len() {
            if let Some(want) = self.want(m, stream) {
                below = below.min(self.members[m].next(stream, want));
            }
        }
        below
    }

    /// Whether a member's loss now would leave nothing waiting: every
    /// vertex's backup is up and stored a snapshot (or none of the vertex
    /// was ever counted), and both holders of each ingest stream hold it
    /// whole.
    fn protected(&self) -> bool {
        let vertices = (0..self.job.wiring.len()).all(|v| {
            let b = self.meta.backup[v];
            self.members[b].up
                && b != self.meta.at[v]
                && (self.meta.ready[v] || self.meta.counted[v].is_none())
        });
        let ingest = (0..2).all(|s| {
            self.meta.holders[s].len() == 2
                && self.meta.holders[s].iter().all(|&h| {
                    self.members[h].up
                        && self.members[h].safe.streams[s].len() == self.inputs[s].len()
                })
        });
        vertices && ingest
    }

    fn up(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&m| self.members[m].up)
            .collect()
    }

    /// Member `l` is lost with its disk: its vertices resume on their
    /// backups from the snapshots those stored; vertices and ingest streams
    /// get new backups and holders among the members that are up.
    fn lose(&mut self, l: usize) {
        self.counts.losses += 1;
        let member = &mut self.members[l];
        member.up = false;
        member.running.clear();
        member.pending.clear();
        member.view = View::default();
        member.safe = View::default();
        self.flight.retain(|(to, _, _)| *to != l);
        let n = self.job.wiring.len();
        for v in 0..n {
            if self.meta.at[v] == l {
                let b = self.meta.backup[v];
                assert!(
                    self.members[b].up && (self.meta.ready[v] || self.meta.counted[v].is_none()),
                    "a loss only while protected"
                );
                self.meta.at[v] = b;
                self.start(v);
                self.counts.moves += 1;
            }
        }
        let up = self.up();
        for s in 0..2 {
            self.meta.holders[s].retain(|h| *h != l);
            let holders = self.meta.holders[s].clone();
            if let Some(&h) = up.iter().find(|m| !holders.contains(m)) {
                self.meta.holders[s].push(h);
            }
        }
        for v in 0..n {
            let b = self.meta.backup[v];
            if self.members[b].up && b != self.meta.at[v] {
                continue;
            }
            let at = self.meta.at[v];
            let load = |m: usize| self.meta.backup.iter().filter(|b| **b == m).count();
            let Some(&b) = up.iter().filter(|&&m| m != at).min_by_key(|&&m| load(m)) else {
                continue;
            };
            let (_, out, dead) = self.job.wiring[v];
            // What the writer's member holds now: no pull from there is
            // refused.
            let low = &self.members[at].view.low;
            self.meta.begin[v] = [low[out], low[dead]];
            self.meta.backup[v] = b;
            self.meta.ready[v] = false;
        }
    }

    /// One step of the schedule. Returns whether every vertex finished.
    fn step(&mut self, faults: bool) -> Result<bool, String> {
        for m in &mut self.members {
            if m.cut > 0 {
                m.cut -= 1;
                m.cut_for += 1;
            } else {
                m.cut_for = 0;
            }
        }
        let finished = (0..self.job.wiring.len()).all(|v| {
            self.members[self.meta.at[v]]
                .running
                .get(&v)
                .is_some_and(|x| x.position().finished)
        });
        if finished {
            return Ok(true);
        }
        if faults {
            self.fault()?;
        }
        match self.rng.below(100) {
            0..=44 => self.run_vertex(),
            45..=69 => self.pull(),
            70..=79 => self.deliver(),
            80..=86 => {
                let m = self.rng.below(self.members.len() as u64) as usize;
                let n = self.members[m].pending.len();
                self.members[m].commit(n, &mut self.seen)
            }
            87..=93 => self.back_up(),
            _ => self.collect(),
        }
        .map(|()| false)
    }

    /// A crash, a cut, a loss or a join, now and then.
    fn fault(&mut self) -> Result<(), String> {
        let up = self.up();
        let losable = self.counts.losses < u64::from(LOSSES) && up.len() >= 3;
        // A member cut off past the heartbeat timeout is declared lost.
        if let Some(&m) = up.iter().find(|&&m| self.members[m].cut_for >= LOST_AFTER)
            && losable
            && self.protected()
        {
            self.lose(m);
            return Ok(());
        }
        let pick = up[self.rng.below(up.len() as u64) as usize];
        match self.rng.below(1000) {
            0..=4 => {
                self.counts.crashes += 1;
                let member = &mut self.members[pick];
                let keep = self.rng.below(member.pending.len() as u64 + 1) as usize;
                member.pending.truncate(keep);
                member.commit(keep, &mut self.seen)?;
                member.view = member.safe.clone();
                let vertices: Vec<usize> = member.running.keys().copied().collect();
                member.running.clear();
                for v in vertices {
                    self.start(v);
                }
                self.flight.retain(|(to, _, _)| *to != pick);
            }
            5..=7 => {
                self.counts.cuts += 1;
                self.members[pick].cut = 1 + self.rng.below(2 * LOST_AFTER);
            }
            8..=9 if losable && self.protected() => self.lose(pick),
            10..=29 if up.len() < MEMBERS => {
                self.members
                    .push(Member::new(View::holding(self.inputs, &[])));
                let new = self.members.len() - 1;
                // The ingest streams short of a holder take it.
                for s in 0..2 {
                    if self.meta.holders[s].len() < 2 {
                        self.meta.holders[s].push(new);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A vertex with input to read reads one entry of one input.
    fn run_vertex(&mut self) -> Result<(), String> {
        let mut ready = Vec::new();
        for (m, member) in self.members.iter().enumerate() {
            if !member.reachable() {
                continue;
            }
            for (&v, vertex) in &member.running {
                for (i, &s) in self.job.wiring[v].0.iter().enumerate() {
                    let at = vertex.position().inputs[i];
                    if at < member.view.low[s] {
                        return Err(format!(
                            "vertex {v} on member {m} reads stream {s} from seq {at}, but its copy there is collected below {}",
                            member.view.low[s]
                        ));
                    }
                    if member.view.streams[s].contains_key(&at) {
                        ready.push((m, v, i));
                    }
                }
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        let (m, v, i) = ready[self.rng.below(ready.len() as u64) as usize];
        let (ins, out, dead) = self.job.wiring[v].clone();
        let member = &mut self.members[m];
        let vertex = member.running.get_mut(&v).expect("runs");
        let seq = vertex.position().inputs[i];
        let entry = Entry::decode(&member.view.streams[ins[i]][&seq])?;
        let fx = vertex
            .on_entry(i, seq, entry)
            .map_err(|e| format!("vertex {v} on member {m}: {e}"))?;
        for (stream, entries) in [(out, fx.output), (dead, fx.dead)] {
            for (seq, e) in entries {
                member.write(Op::Put {
                    stream,
                    seq,
                    bytes: e.encode()?,
                })?;
            }
        }
        if let Some(mut snapshot) = fx.snapshot {
            let changes = std::mem::take(&mut snapshot.state);
            member.write(Op::Snapshot {
                vertex: v,
                bytes: postcard::to_allocvec(&snapshot).map_err(|e| e.to_string())?,
                changes,
            })?;
        }
        Ok(())
    }

    /// A copy asks its source for what it lacks from its next seq: the
    /// source answers with durable entries, which arrive later or never.
    fn pull(&mut self) -> Result<(), String> {
        let mut wanted = Vec::new();
        for m in 0..self.members.len() {
            for s in 0..STREAMS {
                if let Some(w) = self.want(m, s) {
                    wanted.push((m, s, w));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let (m, s, w) = wanted[self.rng.below(wanted.len() as u64) as usize];
        let src = self.source(s);
        if !self.members[m].reachable() || !self.members[src].reachable() {
            return Ok(());
        }
        let next = self.members[m].next(s, w);
        let held = &self.members[src].safe;
        if next < held.low[s] {
            return Err(format!(
                "member {m}'s copy of stream {s} needs seq {next}, but member {src}, its source, holds it from {} on",
                held.low[s]
            ));
        }
        let take = 1 + self.rng.below(4);
        let mut entries = Vec::new();
        let mut seq = next;
        while let Some(bytes) = held.streams[s].get(&seq) {
            entries.push((seq, bytes.clone()));
            seq += 1;
            if entries.len() as u64 == take {
                break;
            }
        }
        if !entries.is_empty() {
            self.flight.push((m, s, entries));
        }
        Ok(())
    }

    /// An answer arrives (or is lost), perhaps after its source moved.
    fn deliver(&mut self) -> Result<(), String> {
        if self.flight.is_empty() {
            return Ok(());
        }
        let k = self.rng.below(self.flight.len() as u64) as usize;
        let (m, s, entries) = self.flight.swap_remove(k);
        if self.rng.below(10) == 0 || !self.members[m].up {
            return Ok(());
        }
        if self.members[m].cut > 0 {
            self.flight.push((m, s, entries));
            return Ok(());
        }
        if self.want(m, s).is_none() {
            return Ok(());
        }
        for (seq, bytes) in entries {
            self.members[m].write(Op::Put {
                stream: s,
                seq,
                bytes,
            })?;
        }
        Ok(())
    }

    /// A backup round for one vertex: the backup fetches the vertex's
    /// latest durable snapshot and stores it once its copies hold what the
    /// snapshot says the vertex wrote.
    fn back_up(&mut self) -> Result<(), String> {
        let v = self.rng.below(self.job.wiring.len() as u64) as usize;
        let (a, b) = (self.meta.at[v], self.meta.backup[v]);
        if a == b || !self.members[a].reachable() || !self.members[b].reachable() {
            return Ok(());
        }
        let from = &self.members[a].safe;
        let Some(bytes) = from.snapshots.get(&v).cloned() else {
            return Ok(());
        };
        let state = from.state.get(&v).cloned().unwrap_or_default();
        let snapshot: VertexSnapshot = postcard::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let (_, out, dead) = self.job.wiring[v];
        let begin = self.meta.begin[v];
        let copies = &self.members[b].safe;
        if next_in(copies, out, begin[0]) < snapshot.output
            || next_in(copies, dead, begin[1]) < snapshot.dead
        {
            return Ok(());
        }
        let member = &mut self.members[b];
        member.write(Op::Stored {
            vertex: v,
            bytes,
            state,
        })?;
        let n = member.pending.len();
        member.commit(n, &mut self.seen)?;
        self.meta.ready[v] = true;
        self.meta.counted[v] = Some(snapshot.inputs);
        self.counts.stored += 1;
        Ok(())
    }

    /// A member collects a written stream as far as it may.
    fn collect(&mut self) -> Result<(), String> {
        let m = self.rng.below(self.members.len() as u64) as usize;
        let s = 2 + self.rng.below(STREAMS as u64 - 2) as usize;
        if !self.members[m].up {
            return Ok(());
        }
        let below = self.collectable(s);
        if below > self.members[m].view.low[s] && below != u64::MAX {
            self.members[m].write(Op::Collect { stream: s, below })?;
            self.counts.collected += 1;
        }
        Ok(())
    }

    /// Where each vertex stands and what each copy lacks, for a failure.
    fn describe(&self) -> String {
        let mut out = String::new();
        for v in 0..self.job.wiring.len() {
            let at = self.meta.at[v];
            let position = self.members[at].running.get(&v).map(|x| x.position());
            out += &format!(
                "vertex {v} on member {at} (backup {}, ready {}): {position:?}\n",
                self.meta.backup[v], self.meta.ready[v]
            );
        }
        for m in 0..self.members.len() {
            for s in 0..STREAMS {
                if let Some(w) = self.want(m, s) {
                    let src = self.source(s);
                    out += &format!(
                        "member {m} copies stream {s} from {w}: next {}, its source {src} holds {:?}..{:?}\n",
                        self.members[m].next(s, w),
                        self.members[src].safe.streams[s].keys().next(),
                        self.members[src].safe.streams[s].keys().last()
                    );
                }
            }
        }
        out
    }
}

/// Runs the job over the members on the schedule `seed` draws; with
/// `faults`, with faults it draws too. Returns what the members made
/// durable, per stream.
fn run_cluster(
    inputs: &[Vec<Entry>],
    seed: u64,
    faults: bool,
) -> Result<(Written, Counts), String> {
    let mut cluster = Cluster::new(inputs, seed);
    for _ in 0..STEPS {
        let done = cluster
            .step(faults)
            .map_err(|e| format!("{e}\n{}", cluster.describe()))?;
        if done {
            for m in 0..cluster.members.len() {
                let n = cluster.members[m].pending.len();
                cluster.members[m].commit(n, &mut cluster.seen)?;
            }
            let mut seen = cluster.seen;
            for s in [INPUT_A, INPUT_B] {
                seen[s].clear();
            }
            return Ok((seen, cluster.counts));
        }
    }
    Err(format!(
        "the job did not finish within {STEPS} steps\n{}",
        cluster.describe()
    ))
}

#[test]
fn the_loss_of_members_with_their_disks_leaves_the_output_of_an_uninterrupted_run() {
    let seeds = seeds();
    let started = Instant::now();
    let mut total = Counts::default();
    for &seed in &seeds {
        let inputs = inputs_of(seed);
        let (expected, _) = run(&inputs, 0, false)
            .unwrap_or_else(|e| panic!("seed {seed}: the uninterrupted run failed: {e}"));
        let (got, counts) = run_cluster(&inputs, seed, true)
            .unwrap_or_else(|e| panic!("seed {seed} (rerun with WEIR_SIM_SEED={seed}): {e}"));
        for (s, (a, b)) in expected.iter().zip(&got).enumerate() {
            assert!(
                a == b,
                "seed {seed} (rerun with WEIR_SIM_SEED={seed}): stream {s} differs from the uninterrupted run on one node ({counts:?}): {} entries against {}",
                a.len(),
                b.len()
            );
        }
        total.crashes += counts.crashes;
        total.cuts += counts.cuts;
        total.losses += counts.losses;
        total.moves += counts.moves;
        total.stored += counts.stored;
        total.collected += counts.collected;
    }
    eprintln!(
        "{} seeds in {:.2} s: {total:?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        total.losses > 0 && total.moves > 0 && total.collected > 0 && total.crashes > 0,
        "the schedules lose members, move vertices, collect and crash: {total:?}"
    );
}
