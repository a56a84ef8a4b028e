//! Where the jobs of a node keep things in its store: the keys of
//! positions, snapshots, timelines, queues and keyed state, the names of
//! their log streams, and reading and writing what is stored there.

use super::*;

/// A position or snapshot stored under `key`, if there is one.
pub(super) fn stored<T: serde::de::DeserializeOwned>(
    streams: &Streams,
    key: &str,
) -> Result<Option<T>> {
    match streams.meta(key)? {
        Some(bytes) => Ok(Some(
            postcard::from_bytes(&bytes).with_context(|| format!("{key} does not decode"))?,
        )),
        None => Ok(None),
    }
}

/// Where the patch timeline of the vertex whose snapshot key is `key` lives.
pub(super) fn timeline_key(key: &str) -> String {
    format!("{PATCHES}{}", key.strip_prefix(SNAPSHOTS).unwrap_or(key))
}

/// Where the request to end the followed file with position key `key` lives.
pub(super) fn ending_key(key: &str) -> String {
    format!("{key}#end")
}

/// Where the queue of accepted changes of the vertex with snapshot key `key` lives.
pub(super) fn queue_key(key: &str) -> String {
    format!("{QUEUES}{}", key.strip_prefix(SNAPSHOTS).unwrap_or(key))
}

/// The stream of what the UDF of the stage writing stream `output` logs:
/// one JSON line per entry, its seq the line's number.
pub(super) fn logs_stream(output: &str) -> String {
    format!("{output}.logs")
}

/// Whether job stream `name` is a UDF stage's log: copied as far as its
/// writer holds it, holding nothing back for its copies.
pub fn is_log(name: &str) -> bool {
    name.ends_with(".logs")
}

/// The snapshot key of stage `stage` of the job `record`.
pub(super) fn stage_key(record: &JobRecord, stage: &str) -> String {
    format!("{SNAPSHOTS}{}/{stage}", record.prefix())
}

/// Where the patch timeline of stage `stage` of the job `record` lives.
pub(super) fn stage_timeline_key(record: &JobRecord, stage: &str) -> String {
    timeline_key(&stage_key(record, stage))
}

/// The keyed state a vertex checkpointed under `owner`.
pub(super) fn load_state(streams: &Streams, owner: &str) -> Result<KeyedState> {
    let mut state = KeyedState::new();
    let mut bad = None;
    streams.scan_state(owner, &mut |key, value| {
        if bad.is_some() {
            return;
        }
        match crate::wasm::instance::decode_entry(value) {
            Ok(names) => {
                state.insert(key.to_vec(), names);
            }
            Err(e) => {
                bad = Some(format!(
                    "{owner}: the state of key {key:02x?} does not decode: {e}"
                ))
            }
        }
    })?;
    match bad {
        Some(message) => Err(NodeError::Patch(message)),
        None => Ok(state),
    }
}

pub(super) fn put(key: &str, value: Vec<u8>) -> Op {
    Op::PutMeta {
        key: key.to_string(),
        value,
    }
}
