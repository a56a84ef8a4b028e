//! Ingest streams on the wire: creating and closing them, and ingest
//! itself, validated as a whole and idempotent per producer.

use super::*;

/// Rows per batch entry written by ingest.
const INGEST_BATCH: usize = 4096;
/// At most this many bad rows are listed in an ingest refusal.
const MAX_LISTED: usize = 20;

/// Per stream, the newest producers' records kept for idempotent ingest.
const MAX_PRODUCERS: usize = 4096;
/// Metadata prefix of producer records: `ingest/<stream id>/<producer>`.
const PRODUCER_PREFIX: &str = "ingest/";

/// What a producer's last stored ingest was: the answer a retry gets.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Produced {
    sequence: u64,
    first_seq: u64,
    events: u64,
    entries: u64,
}

/// The producers of each stream, as last queued for storage (loaded from
/// storage the first time a stream is ingested into). A record is committed
/// with the events it describes, so after a crash both or neither are there.
#[derive(Debug, Default)]
pub(super) struct Producers {
    streams: std::sync::Mutex<std::collections::HashMap<u64, BTreeMap<String, Produced>>>,
}

pub(super) fn create_stream(
    streams: &Streams,
    name: &str,
    columns: &[crate::schema::ColumnSpec],
    time: &str,
    end_time: Option<&str>,
) -> Result<Response> {
    let fields = from_specs(columns).map_err(NodeError::encoding)?;
    for column in std::iter::once(time).chain(end_time) {
        let field = fields
            .iter()
            .find(|f| f.name == column)
            .with_context(|| format!("time column `{column}` is not one of the columns"))?;
        if field.ty != crate::schema::ColumnType::Int64 || field.nullable {
            bail!(
                Request,
                "time column `{column}` must be `int64` (microseconds, not null)"
            );
        }
    }
    if fields.iter().any(|f| f.name.starts_with('_')) {
        bail!(
            Request,
            "column names starting with `_` are reserved ({START}, ...)"
        );
    }
    let info = streams.create_with_time(name, &fields, Some(time), end_time)?;
    Ok(Response::Ok {
        message: format!("stream `{}` ({})", info.name, describe(&fields)),
    })
}

/// Ends an ingest stream: appends the end CTI, after which it takes no events.
pub(super) fn close_stream(streams: &Streams, stream: &str) -> Result<Response> {
    let info = streams.info(stream)?;
    if info.time.is_none() {
        bail!(
            Request,
            "stream `{stream}` is written by a job; only ingest streams are closed by hand"
        );
    }
    let end = Entry::Cti(crate::rstream::END)
        .encode()
        .map_err(NodeError::encoding)?;
    let (seq, ticket) = streams.append(info.id, vec![end])?;
    ticket.wait()?;
    Ok(Response::Ok {
        message: format!("stream `{stream}` closed at seq {seq}"),
    })
}

/// Parses a JSONL body against the stream's columns; stores it only if every
/// row parses, and answers once it is durable. A request `from` a producer
/// with a sequence it already stored stores nothing and gets the answer the
/// first one got.
pub(super) fn ingest(
    streams: &Streams,
    producers: &Producers,
    stream: &str,
    origin: &str,
    from: Option<(String, u64)>,
    body: Vec<u8>,
) -> Result<Response> {
    let info: StreamInfo = streams.info(stream)?;
    let Some(time) = info.time.clone() else {
        bail!(
            Request,
            "stream `{stream}` is written by a job, not by ingest"
        );
    };
    let spec = SourceSpec {
        origin: crate::plan::SourceOrigin::File { follow: false },
        name: stream.to_string(),
        format: SourceFormat::Jsonl,
        path: PathBuf::from(origin),
        fields: info.fields(),
        event_time: time,
        end_time: info.end_time.clone(),
        event_unit: Default::default(),
        end_unit: Default::default(),
        on_error: ErrorPolicy::Fail,
        cti: Default::default(),
        strict: false,
    };
    let mut reader =
        SourceReader::from_reader(&spec, INGEST_BATCH, Box::new(std::io::Cursor::new(body)))?;
    let mut entries = Vec::new();
    let mut rejected = Vec::new();
    let mut events = 0u64;
    while let Some(chunk) = reader.next_chunk()? {
        rejected.extend(chunk.rejected);
        if chunk.batch.num_rows() > 0 && rejected.is_empty() {
            events += chunk.batch.num_rows() as u64;
            entries.push(
                Entry::Batch {
                    producer: "ingest".into(),
                    batch: chunk.batch,
                }
                .encode()
                .map_err(NodeError::encoding)?,
            );
        }
    }
    if !rejected.is_empty() {
        let mut message = format!(
            "ingest into `{stream}` refused, nothing was stored: {} bad row(s)",
            rejected.len()
        );
        for e in rejected.iter().take(MAX_LISTED) {
            message.push_str(&format!("\n  {e}"));
        }
        if rejected.len() > MAX_LISTED {
            message.push_str(&format!("\n  ... and {} more", rejected.len() - MAX_LISTED));
        }
        bail!(Request, "{message}");
    }
    let count = entries.len() as u64;
    let Some((producer, sequence)) = from else {
        let (first_seq, ticket) = streams.append(info.id, entries)?;
        ticket.wait()?;
        return Ok(Response::Ingested {
            events,
            first_seq,
            entries: count,
            duplicate: false,
        });
    };
    let mut all = producers.streams.lock().unwrap_or_else(|e| e.into_inner());
    if let std::collections::hash_map::Entry::Vacant(slot) = all.entry(info.id) {
        let prefix = format!("{PRODUCER_PREFIX}{}/", info.id);
        let mut known = BTreeMap::new();
        for (key, value) in streams.meta_prefix(&prefix)? {
            let record: Produced = serde_json::from_slice(&value)
                .with_context(|| format!("producer record {key} does not decode"))?;
            known.insert(key[prefix.len()..].to_string(), record);
        }
        slot.insert(known);
    }
    let known = all.entry(info.id).or_default();
    if let Some(done) = known.get(&producer).filter(|p| p.sequence >= sequence) {
        let answer = Response::Ingested {
            events: done.events,
            first_seq: done.first_seq,
            entries: done.entries,
            duplicate: true,
        };
        if done.sequence > sequence {
            bail!(
                Request,
                "ingest into `{stream}` refused, nothing was stored: producer `{producer}` already stored sequence {}, after this request's {sequence}",
                done.sequence
            );
        }
        drop(all);
        // The first request may still be on its way to the disk.
        streams.commit_meta(Vec::new())?.wait()?;
        return Ok(answer);
    }
    let key = |p: &str| format!("{PRODUCER_PREFIX}{}/{p}", info.id);
    // The oldest producer leaves when the window is full.
    let evicted = (known.len() >= MAX_PRODUCERS && !known.contains_key(&producer))
        .then(|| {
            known
                .iter()
                .min_by_key(|(_, p)| p.first_seq)
                .map(|(name, _)| name.clone())
        })
        .flatten();
    let mut record = None;
    let (first_seq, ticket) = streams.append_with(info.id, entries, |first_seq| {
        let produced = Produced {
            sequence,
            first_seq,
            events,
            entries: count,
        };
        // The record's JSON, written out: nothing here can fail.
        let value = format!(
            "{{\"sequence\":{},\"first_seq\":{},\"events\":{},\"entries\":{}}}",
            produced.sequence, produced.first_seq, produced.events, produced.entries
        );
        let mut ops = vec![crate::store::Op::PutMeta {
            key: key(&producer),
            value: value.into_bytes(),
        }];
        if let Some(old) = &evicted {
            ops.push(crate::store::Op::DeleteMeta { key: key(old) });
        }
        record = Some(produced);
        ops
    })?;
    if let Some(old) = &evicted {
        known.remove(old);
    }
    if let Some(record) = record {
        known.insert(producer, record);
    }
    drop(all);
    ticket.wait()?;
    Ok(Response::Ingested {
        events,
        first_seq,
        entries: count,
        duplicate: false,
    })
}
