//! The cluster's members in one process over a simulated network, on
//! tokio's paused (virtual) clock: each member is a real [`Cluster`] (Raft,
//! its redb file, heartbeats, the coordinator's watch) whose messages go
//! through a network that loses and delays them, cuts members off and
//! crashes them (a crashed member restarts on its own disk). A schedule of
//! faults is drawn from a seed; throughout, no two members lead in one
//! term and no member's metadata names a member that never joined; once the
//! faults stop, every member holds the same metadata: everyone up, three
//! voters, one coordinator; and a member down longer than the heartbeat
//! timeout was declared lost by the others while it was down. Jobs are
//! submitted, changed and cancelled through random members while the faults
//! happen; at the end every member holds the same jobs, each acknowledged
//! submit is there once with the incarnation its answer gave unless a
//! cancel of it may have been written (a write retried after a lost answer
//! is not a second job, nor refused), each acknowledged change is at the
//! index its answer gave and no change is there twice, each acknowledged
//! cancel is gone, and every vertex is placed on a member. Ingest streams
//! are created too: each acknowledged create is there, held by two distinct
//! members once all are up, its primary one that holds it whole. So are
//! copies' switches, recorded by the member a copy's placement names: each
//! acknowledged one is in the copy's timeline while its incarnation runs.
//! Every member reports that its readers need each stream from one seq on:
//! at the end each stream is collected exactly there, and no job starts
//! past it.
//! A failure prints its seed.
//!
//! `WEIR_SIM_SCHEDULES` sets how many seeds run (default 100); `WEIR_SIM_SEED`
//! runs one. The faults replay from a seed; openraft draws its election
//! timeouts from its own generator, so the interleaving may differ.
//! `WEIR_SIM_LOG` (a tracing filter, e.g. `openraft=info,weir_cluster=debug`)
//! keeps each schedule's log, on the virtual clock, and writes a failing
//! schedule's to `sim-seed-N.log` in the temporary directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_cluster::jobs::{JobSpec, PatchRequest, StageChange};
use weir_cluster::membership::Report;
use weir_cluster::metadata::{Command, Reply};
use weir_cluster::network::{Link, Transport};
use weir_cluster::{Cluster, Settings, WeakCluster};
use weir_net::NetError;
use weir_net::cluster::{ClusterRequest, ClusterResponse, ClusterStatus, StreamNeeds};

const TIMEOUT: Duration = Duration::from_millis(300);
/// Where every member's readers need each ingest stream from.
const NEED: u64 = 100;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("a simulation lock")
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The simulated network: who is running, who is cut off, how lossy.
struct Net {
    members: Mutex<HashMap<String, Cluster>>,
    cut: Mutex<BTreeSet<String>>,
    rng: Mutex<Rng>,
    /// Per mille of messages lost (the request or its answer).
    loss: u64,
    /// Largest delay of a message each way, in ms.
    delay: u64,
}

/// One member's end of the network.
struct End {
    from: String,
    net: Arc<Net>,
}

impl Net {
    fn draw(&self, n: u64) -> u64 {
        lock(&self.rng).below(n)
    }
    fn cut(&self, a: &str, b: &str) -> bool {
        let cut = lock(&self.cut);
        cut.contains(a) || cut.contains(b)
    }
}

impl Transport for End {
    fn call<'a>(
        &'a self,
        addr: &'a str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<ClusterResponse, NetError>> + Send + 'a>> {
        Box::pin(async move {
            let net = &self.net;
            let lost = || NetError::Transport(format!("{} -> {addr}: lost", self.from));
            let there = net.draw(net.delay + 1);
            let back = net.draw(net.delay + 1);
            let (drop_request, drop_answer) =
                (net.draw(1000) < net.loss, net.draw(1000) < net.loss);
            tokio::time::sleep(Duration::from_millis(there)).await;
            let target = lock(&net.members).get(addr).cloned();
            let target = match target {
                Some(t) if !drop_request && !net.cut(&self.from, addr) => t,
                _ => {
                    tokio::time::sleep(timeout).await;
                    return Err(lost());
                }
            };
            let answer = tokio::time::timeout(timeout, target.handle(request)).await;
            tokio::time::sleep(Duration::from_millis(back)).await;
            if drop_answer || net.cut(&self.from, addr) {
                return Err(lost());
            }
            match answer {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(e)) => Err(NetError::Refused(e.to_string())),
                Err(_) => Err(lost()),
            }
        })
    }
}

struct Sim {
    net: Arc<Net>,
    dirs: Vec<tempfile::TempDir>,
    /// Member index -> its cluster handle while it runs.
    running: BTreeMap<usize, Cluster>,
    /// Term -> leader, as every member reported it.
    leaders: BTreeMap<u64, u64>,
}

fn addr(i: usize) -> String {
    format!("10.0.0.{}:7001", i + 1)
}

impl Sim {
    async fn start(&mut self, i: usize, join: Option<String>) {
        let end: Link = Arc::new(End {
            from: addr(i),
            net: self.net.clone(),
        });
        // Each member's readers need every stream from seq NEED on, as of
        // the metadata it has applied.
        let me: Arc<std::sync::OnceLock<WeakCluster>> = Arc::default();
        let mine = me.clone();
        let report = Report {
            needs: Arc::new(move || {
                let metadata = mine.get()?.upgrade()?.metadata();
                let streams = metadata.streams.keys().map(|n| (n.clone(), NEED));
                Some(StreamNeeds {
                    epoch: metadata.epoch,
                    streams: streams.collect(),
                })
            }),
            ..Report::default()
        };
        let settings = Settings {
            lost_after: TIMEOUT,
            join,
        };
        let cluster = Cluster::start_with(self.dirs[i].path(), addr(i), end, settings, report)
            .await
            .expect("a member starts");
        let _ = me.set(cluster.downgrade());
        lock(&self.net.members).insert(addr(i), cluster.clone());
        self.running.insert(i, cluster);
    }

    async fn crash(&mut self, i: usize) {
        lock(&self.net.members).remove(&addr(i));
        if let Some(c) = self.running.remove(&i) {
            c.shutdown().await;
        }
    }

    /// Waits until every member is up and votes, and all name the same
    /// coordinator and hold the same members.
    async fn settle(&mut self, seed: u64, n: usize) {
        let mut last = Vec::new();
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = self.observe(seed, n);
            let first = &last[0];
            let settled = last.iter().all(|s| {
                s.coordinator.is_some()
                    && s.coordinator == first.coordinator
                    && s.members.len() == n
                    && s.members.iter().all(|m| m.health == "up" && m.voter)
            });
            if settled {
                return;
            }
        }
        panic!("seed {seed}: the members did not converge within 60 virtual seconds: {last:?}");
    }

    /// Checks what must hold at every moment; returns each running member's status.
    fn observe(&mut self, seed: u64, n: usize) -> Vec<ClusterStatus> {
        let mut all = Vec::new();
        for c in self.running.values() {
            let s = c.status();
            if s.coordinator == Some(s.answered_by) {
                let leader = *self.leaders.entry(s.term).or_insert(s.answered_by);
                assert_eq!(
                    leader, s.answered_by,
                    "seed {seed}: members {leader} and {} both lead term {}",
                    s.answered_by, s.term
                );
            }
            for m in &s.members {
                assert!(
                    (1..=n as u64).contains(&m.id) && m.addr == addr(m.id as usize - 1),
                    "seed {seed}: member {} at {} never joined: {s:?}",
                    m.id,
                    m.addr
                );
            }
            all.push(s);
        }
        all
    }
}

async fn schedule(seed: u64) {
    let mut rng = Rng(seed);
    let n = 3;
    let net = Arc::new(Net {
        members: Mutex::default(),
        cut: Mutex::default(),
        rng: Mutex::new(Rng(seed ^ 0x5eed)),
        loss: rng.below(60),
        delay: rng.below(20),
    });
    let mut sim = Sim {
        net: net.clone(),
        dirs: (0..n)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect(),
        running: BTreeMap::new(),
        leaders: BTreeMap::new(),
    };
    sim.start(0, None).await;
    for i in 1..n {
        sim.start(i, Some(addr(0))).await;
    }
    sim.settle(seed, n).await;
    // Writes in flight while the faults happen: (job, what, outcome).
    type Outcome = (String, Write, Option<Reply>);
    let mut writes: Vec<tokio::task::JoinHandle<Outcome>> = Vec::new();
    let mut submitted = 0u64;
    // Faults: one member down (cut off or crashed) at a time, the next only
    // once the cluster is whole again, as Raft needs a majority of voters.
    let mut down: Option<(usize, bool)> = None;
    for _ in 0..(4 + rng.below(8)) {
        let pause = Duration::from_millis(100 + rng.below(1500));
        match (down, rng.below(3)) {
            (None, 0) => {
                let i = rng.below(n as u64) as usize;
                lock(&net.cut).insert(addr(i));
                down = Some((i, false));
            }
            (None, 1) => {
                let i = rng.below(n as u64) as usize;
                sim.crash(i).await;
                down = Some((i, true));
            }
            (Some((i, crashed)), _) => {
                // Down for long: the others must have declared it lost.
                tokio::time::sleep(TIMEOUT * 8).await;
                let statuses = sim.observe(seed, n);
                let lost = statuses.iter().any(|s| {
                    s.answered_by != i as u64 + 1
                        && s.members
                            .iter()
                            .any(|m| m.id == i as u64 + 1 && m.health == "lost")
                });
                if !lost {
                    for c in sim.running.values() {
                        eprintln!("seed {seed}: {}", c.raft_metrics());
                    }
                }
                assert!(
                    lost,
                    "seed {seed}: member {} down for long, not lost: {statuses:?}",
                    i + 1
                );
                if crashed {
                    sim.start(i, None).await;
                } else {
                    lock(&net.cut).remove(&addr(i));
                }
                sim.settle(seed, n).await;
                down = None;
            }
            _ => {}
        }
        // A job submitted, or an earlier one cancelled, through a random
        // running member, while the faults go on.
        let through: Vec<&Cluster> = sim.running.values().collect();
        let via = through[rng.below(through.len() as u64) as usize].clone();
        let (name, write) = match rng.below(7) {
            4 => (format!("s{}", rng.below(3)), Write::Stream),
            6 if submitted > 0 => {
                let name = format!("j{}", rng.below(submitted));
                let id = via.metadata().jobs.get(&name).map_or(0, |j| j.id);
                match rng.below(5) {
                    0 => (name, Write::Promote(id)),
                    _ => (name, Write::Follower(id, rng.below(100), rng.below(4) == 0)),
                }
            }
            5 if submitted > 0 => {
                let name = format!("j{}", rng.below(submitted));
                let id = via.metadata().jobs.get(&name).map_or(0, |j| j.id);
                (name, Write::Timeline(id, 1 + rng.below(1 << 40)))
            }
            0 if submitted > 0 => (format!("j{}", rng.below(submitted)), Write::Cancel),
            1 if submitted > 0 => (
                format!("j{}", rng.below(submitted)),
                Write::Patch(1 + rng.below(u64::MAX - 1)),
            ),
            _ => {
                submitted += 1;
                (format!("j{}", submitted - 1), Write::Submit)
            }
        };
        let command = match write {
            Write::Submit => Command::SubmitJob(JobSpec {
                name: name.clone(),
                path: "/jobs/q.wsql".into(),
                text: String::new(),
                parallelism: 1,
                modules: BTreeMap::new(),
                origin: 1,
                vertices: (0..1 + rng.below(7)).map(|v| format!("v{v}")).collect(),
                nonce: 1 + rng.below(u64::MAX - 1),
                // Some jobs run their first vertex on up to three members.
                replicate: BTreeMap::from([("v0".to_string(), 1 + rng.below(3) as usize)]),
            }),
            Write::Cancel => Command::CancelJob { name: name.clone() },
            Write::Stream => Command::CreateStream(stream_spec(&name)),
            Write::Timeline(id, position) => {
                // One more switch than the member has seen recorded.
                let job = via.metadata().jobs.get(&name).cloned();
                let mut timeline = job
                    .as_ref()
                    .and_then(|j| j.timelines.get("v0").cloned())
                    .unwrap_or_default();
                timeline.patches.push(weir_core::patch::Patch {
                    position,
                    ctis: position,
                    version: "ab".repeat(32),
                    change: weir_core::patch::Change::Deploy,
                    at_ms: 0,
                });
                timeline.taken += 1;
                Command::RecordTimeline {
                    name: name.clone(),
                    id,
                    copy: "v0".into(),
                    member: job
                        .and_then(|j| j.placement.get("v0").copied())
                        .unwrap_or(0),
                    timeline,
                }
            }
            Write::Follower(id, ctis, failed) => {
                let job = via.metadata().jobs.get(&name).cloned();
                let member = job
                    .as_ref()
                    .and_then(|j| j.followers("v0").into_iter().next())
                    .unwrap_or(0);
                let index = job.map_or(0, |j| j.patches.len().saturating_sub(1) as u64);
                match failed {
                    true => Command::DropFollower {
                        name: name.clone(),
                        id,
                        copy: "v0".into(),
                        member,
                    },
                    false => Command::Hold {
                        name: name.clone(),
                        id,
                        copy: "v0".into(),
                        member,
                        held: weir_cluster::jobs::Held { index, ctis },
                    },
                }
            }
            Write::Promote(id) => {
                let job = via.metadata().jobs.get(&name).cloned();
                let member = job
                    .as_ref()
                    .and_then(|j| j.replicas.get("v0"))
                    .and_then(|r| r.first().copied())
                    .unwrap_or(0);
                Command::Promote {
                    name: name.clone(),
                    id,
                    vertex: "v0".into(),
                    member,
                }
            }
            Write::Patch(nonce) => Command::PatchJob {
                name: name.clone(),
                patch: PatchRequest {
                    stage: "v0".into(),
                    change: StageChange::Rollback { to: None },
                    origin: 1,
                    nonce,
                },
            },
        };
        writes.push(tokio::spawn(async move {
            let reply = tokio::time::timeout(TIMEOUT * 20, via.write(command)).await;
            (name, write, reply.ok().and_then(Result::ok))
        }));
        tokio::time::sleep(pause).await;
        sim.observe(seed, n);
    }
    if let Some((i, crashed)) = down {
        if crashed {
            sim.start(i, None).await;
        } else {
            lock(&net.cut).remove(&addr(i));
        }
    }
    // Healed: everyone converges, whatever was lost on the way.
    sim.settle(seed, n).await;
    let mut outcomes = Vec::new();
    for w in writes {
        outcomes.push(w.await.expect("a write task"));
    }
    sim.settle(seed, n).await;
    // The last writes reach every member within a few heartbeats, and so
    // do the collections the members' reports allow.
    for _ in 0..100 {
        let all: Vec<_> = sim
            .running
            .values()
            .map(|c| {
                let m = c.metadata();
                (m.jobs, m.streams)
            })
            .collect();
        let collected = all[0].1.values().all(|s| s.low == NEED);
        if collected && all.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check_jobs(seed, &sim, &outcomes);
    for c in sim.running.values() {
        c.shutdown().await;
    }
}

/// Every member holds the same jobs, and they are what the acknowledged
/// writes say.
fn check_jobs(seed: u64, sim: &Sim, outcomes: &[(String, Write, Option<Reply>)]) {
    let all: Vec<_> = sim.running.values().map(|c| c.metadata()).collect();
    let jobs = &all[0].jobs;
    for m in &all {
        assert_eq!(&m.jobs, jobs, "seed {seed}: members hold different jobs");
    }
    let mut ids = BTreeSet::new();
    for job in jobs.values() {
        assert!(
            ids.insert(job.id),
            "seed {seed}: two jobs with id {}",
            job.id
        );
        assert_eq!(job.placement.len(), job.spec.vertices.len(), "seed {seed}");
        let nonces: BTreeSet<u64> = job.patches.iter().map(|p| p.nonce).collect();
        assert_eq!(
            nonces.len(),
            job.patches.len(),
            "seed {seed}: a change of `{}` written twice",
            job.spec.name
        );
        assert!(
            job.placement
                .values()
                .all(|m| all[0].members.contains_key(m)),
            "seed {seed}: a vertex placed on no member: {job:?}"
        );
        assert!(
            job.backups
                .iter()
                .all(|(v, b)| job.placement.get(v) != Some(b)),
            "seed {seed}: a vertex backed up by its own member: {job:?}"
        );
        // A replica is on another member than its vertex and its backup,
        // and a vertex has no more instances than it asked for.
        for (v, replicas) in &job.replicas {
            let k = job.spec.replicate.get(v).copied().unwrap_or(1);
            assert!(
                replicas.len() < k
                    && !replicas.contains(&job.placement[v])
                    && job.backups.get(v).is_none_or(|b| !replicas.contains(b)),
                "seed {seed}: replicas of `{v}` (replicate = {k}): {job:?}"
            );
        }
        // Only a follower of a copy says where it stopped.
        for (v, holds) in &job.holds {
            let followers = job.followers(v);
            assert!(
                holds.keys().all(|m| followers.contains(m)),
                "seed {seed}: a stop of `{v}` from a member that does not follow it: {job:?}"
            );
        }
    }
    // Every acknowledged stream is there, on two members that are up, its
    // primary one that holds it whole.
    for m in &all {
        assert_eq!(
            m.streams, all[0].streams,
            "seed {seed}: members hold different streams"
        );
    }
    for (name, write, reply) in outcomes {
        if *write == Write::Stream && matches!(reply, Some(Reply::Done | Reply::Unchanged)) {
            let stream = all[0].streams.get(name);
            assert!(
                stream.is_some(),
                "seed {seed}: acknowledged stream `{name}` lost"
            );
        }
    }
    // Every member reports its readers need each stream from NEED on: once
    // all have reported for the same placement, each stream is collected
    // there, never further, and every job starts at or below it.
    for (name, stream) in &all[0].streams {
        assert_eq!(
            stream.low, NEED,
            "seed {seed}: stream `{name}` is collected below {}, not {NEED}, with every member needing it from {NEED}",
            stream.low
        );
    }
    for job in all[0].jobs.values() {
        for (name, start) in &job.starts {
            assert!(
                *start <= all[0].streams.get(name).map_or(0, |s| s.low),
                "seed {seed}: job `{}` starts `{name}` at {start}, past its collection point",
                job.spec.name
            );
        }
    }
    for stream in all[0].streams.values() {
        let holders: BTreeSet<_> = stream.holders.iter().collect();
        assert!(
            stream.holders.len() == 2 && holders.len() == 2,
            "seed {seed}: stream held by {:?} with every member up",
            stream.holders
        );
        assert!(
            stream
                .holders
                .iter()
                .all(|h| all[0].members.contains_key(h))
                && stream.ready.contains(&stream.holders[0]),
            "seed {seed}: {stream:?}"
        );
    }
    // Per job: its submit's answer, and whether a cancel was acknowledged.
    // A cancel whose answer was lost may have been written (Raft commits a
    // write its client saw fail): it counts too.
    let cancelled = |name: &str| {
        outcomes.iter().any(|(n, w, r)| {
            n == name && *w == Write::Cancel && !matches!(r, Some(Reply::Refused(_)))
        })
    };
    for (name, write, reply) in outcomes {
        match (write, reply) {
            (Write::Submit, Some(Reply::Submitted { id })) if !cancelled(name) => {
                assert_eq!(
                    jobs.get(name).map(|j| j.id),
                    Some(*id),
                    "seed {seed}: acknowledged submit of `{name}` (id {id}) lost"
                );
            }
            (Write::Submit, Some(Reply::Submitted { .. })) => {}
            (Write::Submit, Some(other)) => {
                panic!("seed {seed}: a first submit of `{name}` answered {other:?}")
            }
            (Write::Cancel, Some(Reply::Done | Reply::Unchanged)) => {
                let resubmitted = outcomes
                    .iter()
                    .any(|(n, w, r)| n == name && *w == Write::Submit && r.is_none());
                assert!(
                    resubmitted || !jobs.contains_key(name),
                    "seed {seed}: acknowledged cancel of `{name}` did not take"
                );
            }
            // An acknowledged switch is in the copy's timeline on every
            // member, while that incarnation runs.
            (Write::Timeline(id, position), Some(Reply::Done)) => {
                if let Some(job) = jobs.get(name).filter(|j| j.id == *id) {
                    let kept = job.timelines.get("v0").map(|t| &t.patches);
                    assert!(
                        kept.is_some_and(|p| p.iter().any(|p| p.position == *position)),
                        "seed {seed}: acknowledged switch of `{name}` v0 at {position} lost: {kept:?}"
                    );
                }
            }
            (Write::Patch(nonce), Some(Reply::Patched { index })) if !cancelled(name) => {
                let at = jobs
                    .get(name)
                    .and_then(|j| j.patches.get(*index))
                    .map(|p| p.nonce);
                assert_eq!(
                    at,
                    Some(*nonce),
                    "seed {seed}: acknowledged change {index} of `{name}` lost"
                );
            }
            _ => {}
        }
    }
}

/// A write the simulation makes while the faults happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Submit,
    Cancel,
    /// A change to a stage, with its number.
    Patch(u64),
    /// An ingest stream created.
    Stream,
    /// A switch of copy `v0` recorded in its timeline by the member that
    /// runs it: the job's incarnation, and the switch's input position.
    Timeline(u64, u64),
    /// A follower of copy `v0` (one of its replicas) stopped for the job's
    /// latest change (incarnation, CTIs), or failed and is dropped.
    Follower(u64, u64, bool),
    /// Copy `v0`, behind its peers, moves to a replica (incarnation).
    Promote(u64),
}

/// The definition of ingest stream `name` (the same for every create).
fn stream_spec(name: &str) -> weir_cluster::streams::StreamSpec {
    weir_cluster::streams::StreamSpec {
        name: name.to_string(),
        columns: vec![weir_core::schema::ColumnSpec {
            name: "ts".into(),
            ty: "int64".into(),
        }],
        time: "ts".into(),
        end_time: None,
    }
}

/// Each schedule's log, kept while `WEIR_SIM_LOG` is set.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&LOG).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Virtual time since the schedule began, in ms.
struct VirtualTime(tokio::time::Instant);

impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let at = tokio::time::Instant::now().saturating_duration_since(self.0);
        write!(w, "{:>9.3}", at.as_secs_f64() * 1000.0)
    }
}

#[test]
fn members_agree_through_loss_delay_partitions_and_crashes() {
    let seeds: Vec<u64> = match std::env::var("WEIR_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEIR_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("WEIR_SIM_SCHEDULES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(100u64);
            (1..=count).collect()
        }
    };
    let log = std::env::var("WEIR_SIM_LOG").ok();
    for seed in seeds {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let _log = log.as_ref().map(|filter| {
            lock(&LOG).clear();
            let start = runtime.block_on(async { tokio::time::Instant::now() });
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(|| LogWriter)
                .with_ansi(false)
                .with_timer(VirtualTime(start))
                .finish();
            tracing::subscriber::set_default(subscriber)
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(schedule(seed))
        }));
        if let Err(e) = outcome {
            eprintln!(
                "the cluster simulation failed at seed {seed} (rerun with WEIR_SIM_SEED={seed})"
            );
            if log.is_some() {
                let path = std::env::temp_dir().join(format!("sim-seed-{seed}.log"));
                match std::fs::write(&path, &*lock(&LOG)) {
                    Ok(()) => eprintln!("its log: {}", path.display()),
                    Err(e) => eprintln!("its log could not be written to {}: {e}", path.display()),
                }
            }
            std::panic::resume_unwind(e);
        }
    }
}
