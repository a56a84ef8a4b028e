//! Ingest streams in a cluster ([`weir_cluster::streams`]). Every member
//! keeps a copy of each (created empty). An ingest sent to any member goes
//! to the stream's primary, which writes the entries to the other holders
//! first ([`Request::Replicate`]) and to its own copy once they have them
//! durable; only then does it answer. So the primary's copy, which jobs'
//! sources on other members pull from, holds only what two members hold,
//! and every copy is a prefix of one sequence of entries: a batch the
//! holders took but the primary did not answer for is written again at the
//! same seqs before anything else.

use std::collections::BTreeSet;
use std::time::Instant;

use weir_cluster::metadata::{Command, Metadata, NodeId, Reply};
use weir_cluster::streams::{ClusterStream, StreamSpec};
use weir_net::frames;
use weir_net::protocol::Client;

use super::ingest::{Parsed, Recorded, check_stream, ops_of, parse_ingest, records_of};
use super::turns::Waiting;
use super::*;

/// How long the primary tries to have a batch on the other holders before
/// it answers that it could not (the batch stays pending).
const REPLICATE_FOR: Duration = Duration::from_secs(10);
/// How long it waits between tries.
const RETRY: Duration = Duration::from_millis(100);
/// Entries a holder that is behind gets per catch-up batch.
const CATCH_UP: usize = 64;

/// A batch the primary sent to the holders and has not yet stored itself.
#[derive(Debug)]
pub(super) struct Pending {
    first: u64,
    pub(super) entries: Vec<Vec<u8>>,
    records: Vec<(String, String)>,
    evicted: Vec<String>,
    /// The producers' records it stores, noted here once it is stored.
    recorded: Vec<Recorded>,
}

impl Pending {
    /// A batch from seq `first`, empty so far.
    pub(super) fn empty(first: u64) -> Pending {
        Pending {
            first,
            entries: Vec::new(),
            records: Vec::new(),
            evicted: Vec::new(),
            recorded: Vec::new(),
        }
    }

    /// Stores a producer's record with the batch.
    pub(super) fn add_record(&mut self, recorded: Recorded) {
        self.records.extend(recorded.records.iter().cloned());
        self.evicted.extend(recorded.evicted.iter().cloned());
        self.recorded.push(recorded);
    }
}

/// The state of an ingest stream this member is the primary of; held while
/// a batch is written, so the stream's batches go one at a time.
#[derive(Debug, Default)]
pub(super) struct Primary {
    pub(super) pending: Option<Pending>,
}

/// What a write to a cluster stream stores: an ingest's events, or the end CTI.
pub(super) enum Write {
    Ingest {
        origin: String,
        from: Option<(String, u64)>,
        body: Vec<u8>,
    },
    Close,
}

impl Node {
    /// The cluster's ingest stream `name`, if this node is a member and
    /// the cluster holds one of that name.
    pub(super) fn cluster_stream(&self, name: &str) -> Option<(Cluster, ClusterStream)> {
        let cluster = self.cluster.get()?;
        let stream = cluster.metadata().streams.get(name)?.clone();
        Some((cluster.clone(), stream))
    }

    /// Creates this member's copy of every cluster stream it lacks. No
    /// reader here collects one: a source may resume on any member, so
    /// each is collected only below the point the coordinator sets from
    /// every member's readers (see `collect`).
    pub(super) fn local_copies(&self, metadata: &Metadata) -> Result<()> {
        for s in metadata.streams.values() {
            if let Ok(info) = self.streams.info(&s.spec.name) {
                self.jobs.keep_whole(info.id);
            } else {
                let fields =
                    check_stream(&s.spec.columns, &s.spec.time, s.spec.end_time.as_deref())?;
                let info = self.streams.create_with_time(
                    &s.spec.name,
                    &fields,
                    Some(&s.spec.time),
                    s.spec.end_time.as_deref(),
                )?;
                self.jobs.keep_whole(info.id);
            }
        }
        Ok(())
    }

    /// Creates this member's copy of cluster stream `name` if it lacks it
    /// (the scheduler creates them too, at its next tick).
    async fn local_copy(&self, cluster: &Cluster, name: &str) -> Result<()> {
        if self.streams.info(name).is_ok() {
            return Ok(());
        }
        self.local_copies_now(cluster).await
    }

    async fn local_copies_now(&self, cluster: &Cluster) -> Result<()> {
        let (node, metadata) = (self.clone(), cluster.metadata());
        tokio::task::spawn_blocking(move || node.local_copies(&metadata)).await?
    }

    /// Creates an ingest stream in the cluster: the coordinator picks the
    /// members that hold it. The same definition again changes nothing.
    pub(super) async fn create_cluster_stream(
        &self,
        cluster: &Cluster,
        spec: StreamSpec,
    ) -> Result<Response> {
        let fields = check_stream(&spec.columns, &spec.time, spec.end_time.as_deref())?;
        if let Ok(info) = self.streams.info(&spec.name)
            && self.cluster_stream(&spec.name).is_none()
            && (info.columns != spec.columns || info.time.as_deref() != Some(spec.time.as_str()))
        {
            bail!(
                Request,
                "stream `{}` exists on member {} with columns {}; pick another name",
                spec.name,
                cluster.id(),
                describe(&info.fields())
            );
        }
        let name = spec.name.clone();
        let again = match cluster.write(Command::CreateStream(spec)).await? {
            Reply::Done => false,
            Reply::Unchanged => true,
            Reply::Refused(why) => bail!(Request, "{why}"),
            other => bail!(
                Request,
                "the coordinator answered the create with {other:?}"
            ),
        };
        // This member may apply the entry a moment after the coordinator.
        let mut holders = Vec::new();
        for _ in 0..50 {
            if let Some((_, s)) = self.cluster_stream(&name) {
                holders = s.holders;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.local_copies_now(cluster).await?;
        let holders: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
        Ok(Response::Ok {
            message: format!(
                "stream `{name}` ({}){} held by members {}",
                describe(&fields),
                if again {
                    " already in the cluster,"
                } else {
                    ""
                },
                holders.join(" and ")
            ),
        })
    }

    /// Makes this member's stream `name`, read by a job submitted to the
    /// cluster, a cluster stream, if it is not one: only while it is empty,
    /// since its entries would be on this member alone.
    pub(super) async fn to_cluster_stream(&self, cluster: &Cluster, name: &str) -> Result<()> {
        if self.cluster_stream(name).is_some() {
            return Ok(());
        }
        let info = self.streams.info(name)?;
        let Some(time) = info.time.clone() else {
            bail!(
                Request,
                "stream `{name}` is written by a job, not by ingest"
            );
        };
        let (next, ..) = self.streams.positions(info.id).unwrap_or_default();
        if next > 0 {
            bail!(
                Request,
                "stream `{name}` holds {next} entries on member {} alone, created before this node joined a cluster; a job in the cluster reads streams created in it (`weir stream create` with another name)",
                cluster.id()
            );
        }
        let spec = StreamSpec {
            name: name.to_string(),
            columns: info.columns.clone(),
            time,
            end_time: info.end_time.clone(),
        };
        self.create_cluster_stream(cluster, spec).await?;
        Ok(())
    }

    /// The streams this member holds, each of the cluster's ingest streams
    /// as its primary holds it (this member's copy may hold less, or
    /// nothing). Asked by a member (`from_member`): its own copies.
    pub(super) async fn list_streams(&self, from_member: bool) -> Vec<StreamSummary> {
        let mut list = self.list();
        let Some(cluster) = self.cluster.get().filter(|_| !from_member) else {
            return list;
        };
        let (me, metadata) = (cluster.id(), cluster.metadata());
        let primary_of = |name: &str| {
            metadata
                .streams
                .get(name)
                .and_then(ClusterStream::primary)
                .filter(|p| *p != me)
        };
        let primaries: BTreeSet<NodeId> = list.iter().filter_map(|s| primary_of(&s.name)).collect();
        let mut asked: BTreeMap<NodeId, Vec<StreamSummary>> = BTreeMap::new();
        for primary in primaries {
            let request = Request::ListStreams;
            // Not reachable: this member's own copy is listed.
            if let Ok(Response::Streams(theirs)) =
                self.pass_to(cluster, primary, &request, None).await
            {
                asked.insert(primary, theirs);
            }
        }
        for summary in &mut list {
            let theirs = primary_of(&summary.name)
                .and_then(|p| asked.get(&p))
                .and_then(|l| l.iter().find(|t| t.name == summary.name));
            if let Some(theirs) = theirs {
                summary.next = theirs.next;
                summary.low = theirs.low;
            }
        }
        list
    }

    /// Writes to a cluster stream: at its primary, else passed to it.
    pub(super) async fn write_cluster_stream(
        &self,
        cluster: &Cluster,
        stream: ClusterStream,
        from_member: bool,
        write: Write,
    ) -> Result<Response> {
        let me = cluster.id();
        let name = stream.spec.name.clone();
        let mut primary = stream.primary().context("a stream's holders")?;
        // While the primary is lost and another takes its place, the
        // request waits for it.
        let until = Instant::now() + REPLICATE_FOR * 2;
        while primary != me {
            if from_member {
                // A member passes a write on once: the two disagree on the
                // primary for a moment; the client tries again.
                bail!(
                    Request,
                    "member {me} is not the primary of stream `{name}` (member {primary} is); retry"
                );
            }
            let (request, body) = match &write {
                Write::Ingest { origin, from, body } => {
                    let (producer, sequence) =
                        from.clone().map_or((None, 0), |(p, s)| (Some(p), s));
                    let request = Request::Ingest {
                        stream: name.clone(),
                        origin: origin.clone(),
                        producer,
                        sequence,
                    };
                    (request, Some(body.clone()))
                }
                Write::Close => (
                    Request::CloseStream {
                        stream: name.clone(),
                    },
                    None,
                ),
            };
            match self.pass_to(cluster, primary, &request, body).await {
                Ok(answer) => return Ok(answer),
                Err(e) if Instant::now() < until => {
                    tracing::debug!(stream = %name, primary, "passing a write on: {e:#}");
                    tokio::time::sleep(RETRY * 2).await;
                    primary = cluster
                        .metadata()
                        .streams
                        .get(&name)
                        .and_then(|s| s.primary())
                        .with_context(|| format!("stream `{name}` is not in the cluster"))?;
                }
                Err(e) => return Err(e),
            }
        }
        self.local_copy(cluster, &name).await?;
        let info = self.streams.info(&name)?;
        // Parsed before the stream's batches are taken one at a time.
        let close = matches!(write, Write::Close);
        let (parsed, from) = match write {
            Write::Close => {
                let end = Entry::Cti(crate::rstream::END)
                    .encode()
                    .map_err(NodeError::encoding)?;
                let parsed = Parsed {
                    entries: vec![end],
                    events: 0,
                };
                (parsed, None)
            }
            Write::Ingest { origin, from, body } => {
                let i = info.clone();
                let parsed =
                    tokio::task::spawn_blocking(move || parse_ingest(&i, &origin, body)).await??;
                (parsed, from)
            }
        };
        let request = Waiting {
            parsed,
            from,
            close,
        };
        self.take_turn(cluster, &name, request).await
    }

    fn primary_state(&self, name: &str) -> Arc<tokio::sync::Mutex<Primary>> {
        self.turn(name).state.clone()
    }

    /// Writes the pending batch to the other holders, then here.
    pub(super) async fn finish_pending(
        &self,
        cluster: &Cluster,
        name: &str,
        state: &mut Primary,
    ) -> Result<()> {
        let Some(pending) = state.pending.take() else {
            return Ok(());
        };
        if let Err(e) = self.replicate(cluster, name, &pending).await {
            state.pending = Some(pending);
            return Err(e);
        }
        let info = self.streams.info(name)?;
        let ops = ops_of(info.id, &pending.records, &pending.evicted);
        let (streams, id, first, entries) = (
            self.streams.clone(),
            info.id,
            pending.first,
            pending.entries,
        );
        tokio::task::spawn_blocking(move || -> Result<()> {
            streams.append_at(vec![(id, first, entries)], ops)?;
            streams.commit_meta(Vec::new())?.wait()?;
            Ok(())
        })
        .await??;
        for recorded in pending.recorded {
            self.producers.stored(&self.streams, &info, recorded)?;
        }
        Ok(())
    }

    /// Has `pending` durable on every other holder of stream `name`,
    /// trying for [`REPLICATE_FOR`].
    async fn replicate(&self, cluster: &Cluster, name: &str, pending: &Pending) -> Result<()> {
        let me = cluster.id();
        let until = Instant::now() + REPLICATE_FOR;
        loop {
            let metadata = cluster.metadata();
            let Some(stream) = metadata.streams.get(name) else {
                bail!(Request, "stream `{name}` is not in the cluster");
            };
            if stream.primary() != Some(me) {
                bail!(
                    Request,
                    "member {me} is no longer the primary of stream `{name}`; retry (with the same producer and sequence, the events are stored once)"
                );
            }
            let mut failed = None;
            for holder in stream.holders.iter().filter(|h| **h != me) {
                let Some(addr) = metadata.members.get(holder).map(|m| m.addr.clone()) else {
                    continue;
                };
                if let Err(e) = self.push(me, &addr, name, pending).await {
                    self.forget_client(&addr);
                    failed = Some((*holder, e));
                }
            }
            let Some((holder, e)) = failed else {
                return Ok(());
            };
            if Instant::now() >= until {
                bail!(
                    Request,
                    "ingest into `{name}` is not acknowledged: member {holder} did not store it within {} s ({e:#}); retry (with the same producer and sequence, the events are stored once)",
                    REPLICATE_FOR.as_secs()
                );
            }
            tracing::debug!(stream = %name, holder, "replicating failed, retrying: {e:#}");
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Writes `pending` to the holder at `addr`, first what it lacks before.
    async fn push(&self, me: NodeId, addr: &str, name: &str, pending: &Pending) -> Result<()> {
        let client = self.member_client(addr).await?;
        let id = self.streams.info(name)?.id;
        let end = pending.first + pending.entries.len() as u64;
        let mut next;
        loop {
            next = replicate_to(
                &client,
                me,
                name,
                pending.first,
                &pending.entries,
                (&pending.records, &pending.evicted),
            )
            .await?;
            if next >= pending.first {
                break;
            }
            // What it lacks, from this copy.
            while next < pending.first {
                let take = CATCH_UP.min((pending.first - next) as usize);
                let entries: Vec<Vec<u8>> = self
                    .streams
                    .read(id, next, take)?
                    .into_iter()
                    .map(|(_, e)| e.to_vec())
                    .collect();
                if entries.is_empty() {
                    bail!(
                        Request,
                        "stream `{name}`: member at {addr} lacks seq {next}, which this copy no longer holds"
                    );
                }
                // Every producer's record goes with the batch that ends the catch-up.
                let records = match next + entries.len() as u64 >= pending.first {
                    true => records_of(&self.streams, id)?,
                    false => Vec::new(),
                };
                next = replicate_to(&client, me, name, next, &entries, (&records, &[])).await?;
            }
        }
        if next < end {
            bail!(
                Request,
                "member at {addr} holds `{name}` to seq {next}, not {end}"
            );
        }
        Ok(())
    }

    /// Serves a primary's [`Request::Replicate`] at a holder.
    pub(super) async fn replicated(
        &self,
        stream: String,
        primary: NodeId,
        (records, evicted): (Vec<(String, String)>, Vec<String>),
        body: Vec<u8>,
    ) -> Result<Response> {
        let cluster = self
            .cluster
            .get()
            .context("this node is still joining its cluster")?;
        let me = cluster.id();
        let held = cluster
            .metadata()
            .streams
            .get(&stream)
            .is_some_and(|s| s.primary() == Some(primary) && s.holders.contains(&me));
        if !held {
            bail!(
                Request,
                "member {me} does not hold stream `{stream}` for member {primary}"
            );
        }
        self.local_copy(cluster, &stream).await?;
        let low = cluster.metadata().streams.get(&stream).map_or(0, |s| s.low);
        let (streams, producers) = (self.streams.clone(), self.producers.clone());
        tokio::task::spawn_blocking(move || -> Result<Response> {
            let info = streams.info(&stream)?;
            let frame = body.get(4..).unwrap_or_default();
            let batch = frames::decode_batch(frame)
                .with_context(|| format!("a batch of `{stream}` from member {primary}"))?;
            // A new holder needs nothing below the stream's collection point.
            if streams.positions(info.id).is_some_and(|p| p.0 < low) {
                streams.skip_to(info.id, low)?;
            }
            let next = streams.positions(info.id).map_or(0, |p| p.0);
            if batch.first > next {
                return Ok(Response::Replicated { next });
            }
            let entries = batch.entries.iter().map(|e| e.to_vec()).collect();
            let ops = ops_of(info.id, &records, &evicted);
            streams.append_at(vec![(info.id, batch.first, entries)], ops)?;
            streams.commit_meta(Vec::new())?.wait()?;
            // Its records changed under what this member loaded of them.
            producers.forget(info.id);
            let next = streams.positions(info.id).map_or(0, |p| p.0);
            Ok(Response::Replicated { next })
        })
        .await?
    }

    /// Brings the holders of the streams this member is the primary of up
    /// to date and reports them ready; one task per stream at a time.
    pub(super) fn sync_holders(&self, cluster: &Cluster, metadata: &Metadata) {
        let me = cluster.id();
        for (name, s) in &metadata.streams {
            if s.primary() != Some(me) || s.holders.iter().all(|h| s.ready.contains(h)) {
                continue;
            }
            let state = self.primary_state(name);
            let Ok(mut state) = state.try_lock_owned() else {
                continue;
            };
            let (node, cluster, name) = (self.clone(), cluster.clone(), name.clone());
            tokio::spawn(async move {
                if let Err(e) = node.sync_stream(&cluster, &name, &mut state).await {
                    tracing::debug!(stream = %name, "bringing its holders up to date: {e:#}");
                }
            });
        }
    }

    async fn sync_stream(&self, cluster: &Cluster, name: &str, state: &mut Primary) -> Result<()> {
        self.local_copy(cluster, name).await?;
        self.finish_pending(cluster, name, state).await?;
        let id = self.streams.info(name)?.id;
        let first = self.streams.positions(id).map_or(0, |p| p.0);
        let empty = Pending::empty(first);
        let me = cluster.id();
        let metadata = cluster.metadata();
        let Some(stream) = metadata.streams.get(name) else {
            return Ok(());
        };
        for holder in stream.holders.iter().filter(|h| !stream.ready.contains(h)) {
            let Some(addr) = metadata.members.get(holder).map(|m| m.addr.clone()) else {
                continue;
            };
            if let Err(e) = self.push(me, &addr, name, &empty).await {
                self.forget_client(&addr);
                return Err(e);
            }
            let ready = Command::StreamReady {
                name: name.to_string(),
                member: *holder,
            };
            cluster.write(ready).await?;
            tracing::info!(stream = %name, holder, "holds the whole stream");
        }
        Ok(())
    }

    /// The connection to the member at `addr`, kept: a connection's
    /// handshake costs more than a batch's trip.
    async fn member_client(&self, addr: &str) -> Result<Client> {
        if let Some(client) = lock(&self.passes).get(addr) {
            return Ok(client.clone());
        }
        let certs = self.peer_certs.get().context("this node's certificates")?;
        let socket: SocketAddr = addr
            .parse()
            .map_err(|e| err!(Request, "member address `{addr}`: {e}"))?;
        let client = Client::connect(socket, certs).await?;
        lock(&self.passes).insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Drops the connection to the member at `addr` after it failed.
    fn forget_client(&self, addr: &str) {
        lock(&self.passes).remove(addr);
    }

    /// Passes a client's request (and its body) to member `member` and
    /// returns its answer.
    async fn pass_to(
        &self,
        cluster: &Cluster,
        member: NodeId,
        request: &Request,
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let metadata = cluster.metadata();
        let addr = metadata
            .members
            .get(&member)
            .map(|m| m.addr.clone())
            .context("the member's address")?;
        let client = self
            .member_client(&addr)
            .await
            .map_err(|e| err!(Request, "member {member} at {addr}: {e}; retry"))?;
        let answer = client.answer(request, body.as_deref()).await;
        if answer.is_err() {
            self.forget_client(&addr);
        }
        answer.map_err(|e| err!(Request, "member {member} at {addr}: {e}; retry"))
    }
}

pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one batch to a holder; returns the first seq it lacks.
async fn replicate_to(
    client: &Client,
    me: NodeId,
    stream: &str,
    first: u64,
    entries: &[Vec<u8>],
    (records, evicted): (&[(String, String)], &[String]),
) -> Result<u64> {
    let mut frame = Vec::new();
    frames::encode_batch(first, entries.iter().map(Vec::as_slice), &mut frame);
    let request = Request::Replicate {
        stream: stream.to_string(),
        primary: me,
        records: records.to_vec(),
        evicted: evicted.to_vec(),
    };
    match client.call(&request, Some(&frame)).await? {
        Response::Replicated { next } => Ok(next),
        other => bail!(Request, "a holder answered a batch with {other:?}"),
    }
}
