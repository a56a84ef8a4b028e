//! The committer thread: group commit of everything queued, then the
//! acknowledgements; a failed commit stops all further writes.

use super::*;

pub(super) fn commit_loop(inner: std::sync::Weak<Inner>, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let already_failed = inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed
            .clone();
        let mut full = false;
        let result = match already_failed {
            Some(reason) => Err(reason),
            None => {
                let ops: Vec<Op> = group.iter_mut().flat_map(|r| r.ops.drain(..)).collect();
                inner.storage.commit(&ops).map_err(|e| match e {
                    StoreError::Full { .. } => {
                        full = true;
                        format!("{e}; the node restarts by itself once space is freed")
                    }
                    e => format!("{e}; restart the node once the disk is fixed"),
                })
            }
        };
        {
            let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            match &result {
                Ok(()) => {
                    for r in &group {
                        for &(stream, seq) in &r.entries {
                            if let Some(head) = state.heads.get_mut(&stream) {
                                head.durable = head.durable.max(seq + 1);
                            }
                        }
                    }
                    for head in state.heads.values_mut() {
                        // Keep the last few durable entries (and every volatile one).
                        let keep_from = head.durable.saturating_sub(HEAD_ENTRIES as u64);
                        if head
                            .memory
                            .first_key_value()
                            .is_some_and(|(s, _)| *s < keep_from)
                        {
                            head.memory = head.memory.split_off(&keep_from);
                        }
                    }
                }
                Err(reason) => {
                    if state.failed.is_none() {
                        tracing::error!("storage failed: {reason}");
                        state.failed = Some(reason.clone());
                        state.full = full;
                    }
                }
            }
        }
        inner.changed.notify_all();
        for r in group {
            if let Some(ack) = r.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
}
