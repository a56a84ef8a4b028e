//! Requests to write an ingest stream this member is the primary of take
//! turns: each waits in the stream's queue, and whichever holds the
//! stream's turn writes every request waiting by then as one batch, with
//! one trip to the other holders and one commit for all of them. Each
//! request still gets its own answer, its own seqs, and its producer's
//! record; a request whose producer already has one in the batch waits for
//! the next.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::sync::oneshot;

use super::ingest::Parsed;
use super::replicate::{Pending, Primary, lock};
use super::*;

/// A request waiting for its stream's turn.
#[derive(Debug)]
pub(super) struct Waiting {
    /// Its entries.
    pub(super) parsed: Parsed,
    /// Its producer and sequence.
    pub(super) from: Option<(String, u64)>,
    /// The end CTI (`weir stream close`).
    pub(super) close: bool,
}

/// A stream's turn, and the requests waiting for it.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// Held while a batch is written.
    pub(super) state: Arc<tokio::sync::Mutex<Primary>>,
    waiting: std::sync::Mutex<VecDeque<(Waiting, oneshot::Sender<Result<Response>>)>>,
}

/// Per ingest stream: its turn here.
pub(super) type Turns = std::sync::Mutex<HashMap<String, Arc<Turn>>>;

impl Node {
    /// Stream `name`'s turn here.
    pub(super) fn turn(&self, name: &str) -> Arc<Turn> {
        let mut all = lock(&self.primaries);
        all.entry(name.to_string()).or_default().clone()
    }

    /// Writes `request` to stream `name` in its turn, with every request
    /// waiting then; returns its answer.
    pub(super) async fn take_turn(
        &self,
        cluster: &Cluster,
        name: &str,
        request: Waiting,
    ) -> Result<Response> {
        let turn = self.turn(name);
        let (answer, mut answered) = oneshot::channel();
        lock(&turn.waiting).push_back((request, answer));
        let mut state = turn.state.lock().await;
        loop {
            // Written by an earlier turn's holder, or by this one.
            if let Ok(answer) = answered.try_recv() {
                return answer;
            }
            let group: Vec<_> = lock(&turn.waiting).drain(..).collect();
            if group.is_empty() {
                break;
            }
            let rest = self.write_group(cluster, name, &mut state, group).await;
            let mut waiting = lock(&turn.waiting);
            for left in rest.into_iter().rev() {
                waiting.push_front(left);
            }
        }
        drop(state);
        answered
            .await
            .unwrap_or_else(|_| Err(err!(Request, "stream `{name}`: the write was dropped")))
    }

    /// Writes `group` to stream `name` as one batch (after any batch still
    /// pending); answers each request and returns those left for the next.
    async fn write_group(
        &self,
        cluster: &Cluster,
        name: &str,
        state: &mut Primary,
        group: Vec<(Waiting, oneshot::Sender<Result<Response>>)>,
    ) -> Vec<(Waiting, oneshot::Sender<Result<Response>>)> {
        let fail_all = |group: Vec<(Waiting, oneshot::Sender<Result<Response>>)>, why: String| {
            for (_, answer) in group {
                let _ = answer.send(Err(err!(Request, "{why}")));
            }
        };
        let info = match self.streams.info(name) {
            Ok(info) => info,
            Err(e) => {
                fail_all(group, format!("{e:#}"));
                return Vec::new();
            }
        };
        if let Err(e) = self.finish_pending(cluster, name, state).await {
            fail_all(group, format!("{e:#}"));
            return Vec::new();
        }
        let mut closed = self.streams.closed(info.id);
        let first = self.streams.positions(info.id).map_or(0, |p| p.0);
        let mut pending = Pending::empty(first);
        let (mut next, mut answers, mut rest) = (first, Vec::new(), Vec::new());
        let mut producers = HashSet::new();
        let mut full = false;
        for (request, answer) in group {
            // In order: once one waits for the next batch, the rest do.
            if full || !rest.is_empty() {
                rest.push((request, answer));
                continue;
            }
            if closed {
                let why = format!("stream `{name}` is closed: it takes no more events");
                let _ = answer.send(Err(err!(Request, "{why}")));
                continue;
            }
            let mut last = false;
            if let Some((producer, sequence)) = &request.from {
                if producers.contains(producer) {
                    rest.push((request, answer));
                    continue;
                }
                match self
                    .producers
                    .check(&self.streams, &info, producer, *sequence)
                {
                    Ok(Some(again)) => {
                        let _ = answer.send(Ok(again));
                        continue;
                    }
                    Err(e) => {
                        let _ = answer.send(Err(e));
                        continue;
                    }
                    Ok(None) => {}
                }
                let planned = (next, &request.parsed);
                match self
                    .producers
                    .plan(&self.streams, &info, producer, *sequence, planned)
                {
                    Ok(recorded) => {
                        producers.insert(producer.clone());
                        // A producer that evicts another ends the batch:
                        // the next one's plan sees the eviction.
                        last = !recorded.evicted.is_empty();
                        pending.add_record(recorded);
                    }
                    Err(e) => {
                        let _ = answer.send(Err(e));
                        continue;
                    }
                }
            }
            let count = request.parsed.entries.len() as u64;
            let response = match request.close {
                true => {
                    closed = true;
                    Response::Ok {
                        message: format!("stream `{name}` closed at seq {next}"),
                    }
                }
                false => Response::Ingested {
                    events: request.parsed.events,
                    first_seq: next,
                    entries: count,
                    duplicate: false,
                },
            };
            pending.entries.extend(request.parsed.entries);
            answers.push((answer, response));
            next += count;
            full = last;
        }
        if answers.is_empty() {
            return rest;
        }
        tracing::debug!(stream = name, requests = answers.len(), "writing a batch");
        state.pending = Some(pending);
        match self.finish_pending(cluster, name, state).await {
            Ok(()) => {
                for (answer, response) in answers {
                    let _ = answer.send(Ok(response));
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                for (answer, _) in answers {
                    let _ = answer.send(Err(err!(Request, "{why}")));
                }
            }
        }
        rest
    }
}
