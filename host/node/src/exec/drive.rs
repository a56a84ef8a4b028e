//! Driving an offline run: every vertex on the calling thread, or each on a
//! thread of its own. Both feed each vertex the entries of each of its
//! inputs in seq order, which is all its output depends on.

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, sync_channel};

use super::RunError;
use super::graph::{Entries, Graph, Node};
use crate::rstream::Entry;

/// Runs the sources in turn, a chunk each, passing every entry depth-first
/// through the vertices that consume it.
pub(super) fn sequential(graph: &mut Graph) -> Result<(), RunError> {
    let Graph {
        sources,
        nodes,
        consumers,
    } = graph;
    loop {
        let mut more = false;
        for source in sources.iter_mut() {
            if let Some(entries) = source.next()? {
                more = true;
                deliver(nodes, consumers, &source.spec.name, entries)?;
            }
        }
        if !more {
            return Ok(());
        }
    }
}

fn deliver(
    nodes: &mut [Node],
    consumers: &HashMap<String, Vec<(usize, usize)>>,
    stream: &str,
    entries: Entries,
) -> Result<(), RunError> {
    let Some(list) = consumers.get(stream) else {
        return Ok(());
    };
    for (seq, entry) in entries {
        for &(v, input) in list {
            let node = &mut nodes[v];
            let out = node
                .consumer
                .on_entry(input, seq, entry.clone(), &node.counters)?;
            if !out.is_empty()
                && let Some(name) = node.output.clone()
            {
                deliver(nodes, consumers, &name, out)?;
            }
        }
    }
    Ok(())
}

/// Entries in flight per vertex: enough to keep threads busy, bounded for memory.
const CHANNEL_DEPTH: usize = 8;

/// An entry for a vertex: (input index, seq, entry).
type Message = (usize, u64, Entry);

/// Where a stream's entries go: each consumer's channel and input index.
type Outs = Vec<(SyncSender<Message>, usize)>;

/// Sends `entries` to every consumer; `false` once a consumer has stopped
/// (it failed, and reports why).
fn send(outs: &Outs, entries: &Entries) -> bool {
    for (seq, entry) in entries {
        for (tx, input) in outs {
            if tx.send((*input, *seq, entry.clone())).is_err() {
                return false;
            }
        }
    }
    true
}

/// Runs each source and vertex on a thread of its own, joined by bounded
/// channels, until the end markers have drained through.
pub(super) fn threaded(graph: &mut Graph) -> Result<(), RunError> {
    let mut senders = Vec::with_capacity(graph.nodes.len());
    let mut receivers = Vec::with_capacity(graph.nodes.len());
    for _ in &graph.nodes {
        let (tx, rx) = sync_channel::<Message>(CHANNEL_DEPTH);
        senders.push(tx);
        receivers.push(rx);
    }
    let outs = |stream: &str| -> Outs {
        graph
            .consumers
            .get(stream)
            .map(|list| {
                list.iter()
                    .map(|&(v, input)| (senders[v].clone(), input))
                    .collect()
            })
            .unwrap_or_default()
    };
    let source_outs: Vec<Outs> = graph.sources.iter().map(|s| outs(&s.spec.name)).collect();
    let node_outs: Vec<Outs> = graph
        .nodes
        .iter()
        .map(|n| n.output.as_deref().map(&outs).unwrap_or_default())
        .collect();
    drop(senders);
    let sources = std::mem::take(&mut graph.sources);
    let nodes = std::mem::take(&mut graph.nodes);
    let panicked = |what: &str| RunError::Output {
        path: format!("{what} thread"),
        error: std::io::Error::other("panicked"),
    };
    std::thread::scope(|scope| {
        let source_threads: Vec<_> = sources
            .into_iter()
            .zip(source_outs)
            .map(|(mut source, outs)| {
                scope.spawn(move || {
                    let result = loop {
                        match source.next() {
                            Ok(Some(entries)) if send(&outs, &entries) => {}
                            Ok(_) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    };
                    (source, result)
                })
            })
            .collect();
        let node_threads: Vec<_> = nodes
            .into_iter()
            .zip(node_outs)
            .zip(receivers)
            .map(|((mut node, outs), rx)| {
                scope.spawn(move || {
                    for (input, seq, entry) in rx {
                        match node.consumer.on_entry(input, seq, entry, &node.counters) {
                            Ok(out) if send(&outs, &out) => {}
                            Ok(_) => break,
                            Err(e) => return (node, Err(e)),
                        }
                    }
                    (node, Ok(()))
                })
            })
            .collect();
        let mut first_error = None;
        for h in source_threads {
            match h.join() {
                Ok((source, result)) => {
                    graph.sources.push(source);
                    if let Err(e) = result {
                        first_error.get_or_insert(e);
                    }
                }
                Err(_) => {
                    first_error.get_or_insert(panicked("source"));
                }
            }
        }
        for h in node_threads {
            match h.join() {
                Ok((node, result)) => {
                    graph.nodes.push(node);
                    if let Err(e) = result {
                        first_error.get_or_insert(e);
                    }
                }
                Err(_) => {
                    first_error.get_or_insert(panicked("vertex"));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}
