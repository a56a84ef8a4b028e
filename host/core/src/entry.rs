//! What an rStream holds: batches of events (Arrow IPC, with the module
//! version that produced them) and CTIs.

use arrow_array::RecordBatch;

/// One entry of an rStream.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A batch of events, with the module version(s) that produced it
    /// (`"source"` for ingested events).
    Batch {
        /// Who wrote it.
        producer: String,
        /// The events.
        batch: RecordBatch,
    },
    /// A CTI: no later entry holds an event starting before `time`.
    Cti(i64),
}

const TAG_BATCH: u8 = 1;
const TAG_CTI: u8 = 2;

/// The CTI that ends a stream: its input is over and every event may be released.
pub const END: i64 = i64::MAX;
/// The encoded end marker.
pub const END_BYTES: [u8; 9] = {
    let t = END.to_le_bytes();
    [TAG_CTI, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]
};

impl Entry {
    /// The entry's bytes: a tag, the producer and the Arrow IPC stream of the batch.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        match self {
            Entry::Cti(t) => {
                let mut out = vec![TAG_CTI];
                out.extend_from_slice(&t.to_le_bytes());
                Ok(out)
            }
            Entry::Batch { producer, batch } => {
                let mut out = vec![TAG_BATCH];
                let p = producer.as_bytes();
                out.extend_from_slice(&(p.len() as u32).to_le_bytes());
                out.extend_from_slice(p);
                let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
                    .map_err(|e| e.to_string())?;
                w.write(batch).map_err(|e| e.to_string())?;
                w.finish().map_err(|e| e.to_string())?;
                drop(w);
                Ok(out)
            }
        }
    }

    /// Decodes [`Entry::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
        match bytes.first() {
            Some(&TAG_CTI) => {
                let t: [u8; 8] = bytes
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .ok_or("a CTI entry is truncated")?;
                Ok(Entry::Cti(i64::from_le_bytes(t)))
            }
            Some(&TAG_BATCH) => {
                let (producer, payload) = split_batch(bytes)?;
                // A push decoder takes the lengths inside the payload only
                // as far as the payload's bytes go: a corrupt length is an
                // error, never an allocation of what it claims.
                // The Arrow reader unwraps some fields of a schema message
                // that a damaged one may lack: its panic is this entry's
                // error, not the node's.
                let decode = || -> Result<Entry, String> {
                    let mut decoder = arrow_ipc::reader::StreamDecoder::new();
                    let mut rest = arrow_buffer::Buffer::from_slice_ref(payload);
                    while !rest.is_empty() {
                        if let Some(batch) = decoder
                            .decode(&mut rest)
                            .map_err(|e| format!("a batch entry does not decode: {e}"))?
                        {
                            return Ok(Entry::Batch {
                                producer: producer.to_string(),
                                batch,
                            });
                        }
                    }
                    Err("a batch entry holds no batch (it is truncated)".into())
                };
                std::panic::catch_unwind(decode).unwrap_or_else(|_| {
                    Err("a batch entry does not decode: its Arrow schema is malformed".into())
                })
            }
            _ => Err("an entry has an unknown tag".into()),
        }
    }
}

/// The producer and the Arrow payload of an encoded batch entry.
pub(super) fn split_batch(bytes: &[u8]) -> Result<(&str, &[u8]), String> {
    let len: [u8; 4] = bytes
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .ok_or("a batch entry is truncated")?;
    let len = u32::from_le_bytes(len) as usize;
    let producer = bytes.get(5..5 + len).ok_or("a batch entry is truncated")?;
    let producer = std::str::from_utf8(producer).map_err(|_| "a batch entry's producer")?;
    Ok((producer, &bytes[5 + len..]))
}

/// Who wrote an encoded entry, and the bytes that must match on a rewrite.
pub fn identity(bytes: &[u8]) -> (&str, &[u8]) {
    match bytes.first() {
        Some(&TAG_BATCH) => split_batch(bytes).unwrap_or(("?", bytes)),
        _ => ("source", bytes),
    }
}

/// What an encoded entry holds, for messages: a CTI's time, or a batch's
/// rows and the range of their start times.
pub fn describe(bytes: &[u8]) -> String {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    match Entry::decode(bytes) {
        Ok(Entry::Cti(t)) => format!("CTI {t}"),
        Ok(Entry::Batch { batch, .. }) => {
            let starts = batch
                .columns()
                .first()
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .map(|s| s.values().iter().copied());
            match starts.and_then(|s| Some((s.clone().min()?, s.max()?))) {
                Some((low, high)) => {
                    format!("{} rows starting {low}..={high}", batch.num_rows())
                }
                None => format!("{} rows", batch.num_rows()),
            }
        }
        Err(_) => format!("{} bytes that do not decode", bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use std::sync::Arc;

    /// A schema message missing a field the Arrow reader unwraps (found by
    /// the `entries` fuzz target) is an error, not a panic.
    #[test]
    fn a_schema_the_arrow_reader_would_panic_on_is_an_error() {
        let bytes = [
            1, 0, 0, 0, 0, 59, 0, 0, 0, 48, 0, 0, 0, 0, 0, 10, 0, 4, 0, 0, 0, 0, 0, 0, 10, 0, 16,
            15, 73, 15, 0, 84, 195, 255, 255, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 185, 0, 0, 0, 0, 0,
            0, 59, 0, 0, 0, 48, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 49,
        ];
        let err = Entry::decode(&bytes).expect_err("malformed");
        assert!(err.contains("does not decode"), "{err}");
    }

    fn batch_entry() -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as arrow_array::ArrayRef,
        )])
        .expect("batch");
        Entry::Batch {
            producer: "source".into(),
            batch,
        }
        .encode()
        .expect("encodes")
    }

    #[test]
    fn an_entry_decodes_to_what_was_encoded_and_every_truncation_is_an_error() {
        let bytes = batch_entry();
        let Entry::Batch { producer, batch } = Entry::decode(&bytes).expect("decodes") else {
            panic!("a batch");
        };
        assert_eq!((producer.as_str(), batch.num_rows()), ("source", 3));
        for end in 0..bytes.len() {
            // The stream's end marker may go; no byte of the batch may.
            if end < bytes.len() - 8 {
                assert!(Entry::decode(&bytes[..end]).is_err(), "cut at {end}");
            }
        }
        assert_eq!(Entry::decode(&END_BYTES), Ok(Entry::Cti(END)));
        assert!(Entry::decode(&[9]).is_err());
    }

    /// Found by the `entries` fuzz target: a message length of 1.4 GB in
    /// an entry of 11 bytes made the decoder allocate it.
    #[test]
    fn a_length_beyond_the_entry_is_an_error_without_allocating_it() {
        let bytes = [1, 1, 0, 0, 0, 1, 6, 0, 0, 0x56, 1];
        let err = Entry::decode(&bytes).expect_err("truncated");
        assert!(err.contains("truncated"), "{err}");
    }
}
