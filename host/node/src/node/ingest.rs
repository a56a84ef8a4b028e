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

/// Checks an ingest stream's definition: the time columns are among the
/// columns, `int64` and not null, and no column name is reserved.
pub(super) fn check_stream(
    columns: &[crate::schema::ColumnSpec],
    time: &str,
    end_time: Option<&str>,
) -> Result<Vec<crate::schema::Field>> {
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
    Ok(fields)
}

pub(super) fn create_stream(
    streams: &Streams,
    name: &str,
    columns: &[crate::schema::ColumnSpec],
    time: &str,
    end_time: Option<&str>,
) -> Result<Response> {
    let fields = check_stream(columns, time, end_time)?;
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

/// A request's events, parsed and encoded as the entries ingest stores.
#[derive(Debug)]
pub(super) struct Parsed {
    /// The entries.
    pub(super) entries: Vec<Vec<u8>>,
    /// The events in them.
    pub(super) events: u64,
}

/// Parses a JSONL body against ingest stream `info`'s columns: every row
/// must parse, else the refusal lists the bad ones (file, line, column).
pub(super) fn parse_ingest(info: &StreamInfo, origin: &str, body: Vec<u8>) -> Result<Parsed> {
    let stream = &info.name;
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
    Ok(Parsed { entries, events })
}

/// A producer's records in metadata, `ingest/<stream id>/<producer>`.
fn producer_key(stream: u64, producer: &str) -> String {
    format!("{PRODUCER_PREFIX}{stream}/{producer}")
}

/// The records ingest writes with a producer's events: its record (as
/// JSON) and the producer that leaves the window, if one does.
#[derive(Debug)]
pub(super) struct Recorded {
    /// Producer → its record's JSON.
    pub(super) records: Vec<(String, String)>,
    /// The producers whose records are deleted.
    pub(super) evicted: Vec<String>,
    produced: Produced,
}

impl Recorded {
    /// The metadata operations that store it with the events of stream `id`.
    pub(super) fn ops(&self, id: u64) -> Vec<crate::store::Op> {
        ops_of(id, &self.records, &self.evicted)
    }
}

/// Producers' records of stream `id` put and deleted, as store operations.
pub(super) fn ops_of(
    id: u64,
    records: &[(String, String)],
    evicted: &[String],
) -> Vec<crate::store::Op> {
    let puts = records
        .iter()
        .map(|(producer, value)| crate::store::Op::PutMeta {
            key: producer_key(id, producer),
            value: value.clone().into_bytes(),
        });
    let deletes = evicted.iter().map(|producer| crate::store::Op::DeleteMeta {
        key: producer_key(id, producer),
    });
    puts.chain(deletes).collect()
}

/// Every producer's record of stream `id`: producer → JSON.
pub(super) fn records_of(streams: &Streams, id: u64) -> Result<Vec<(String, String)>> {
    let prefix = format!("{PRODUCER_PREFIX}{id}/");
    Ok(streams
        .meta_prefix(&prefix)?
        .into_iter()
        .map(|(key, value)| {
            let producer = key[prefix.len()..].to_string();
            (producer, String::from_utf8_lossy(&value).into_owned())
        })
        .collect())
}

type Known = BTreeMap<String, Produced>;

impl Producers {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Known>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stream `id`'s producers, loaded from storage the first time.
    fn load<'a>(
        all: &'a mut std::collections::HashMap<u64, Known>,
        streams: &Streams,
        id: u64,
    ) -> Result<&'a mut Known> {
        if let std::collections::hash_map::Entry::Vacant(slot) = all.entry(id) {
            let prefix = format!("{PRODUCER_PREFIX}{id}/");
            let mut known = BTreeMap::new();
            for (key, value) in streams.meta_prefix(&prefix)? {
                let record: Produced = serde_json::from_slice(&value)
                    .with_context(|| format!("producer record {key} does not decode"))?;
                known.insert(key[prefix.len()..].to_string(), record);
            }
            slot.insert(known);
        }
        Ok(all.entry(id).or_default())
    }

    /// The answer a request of `producer` with `sequence` gets if the
    /// producer stored that sequence (or a later one) already.
    fn again(
        known: &Known,
        stream: &str,
        producer: &str,
        sequence: u64,
    ) -> Result<Option<Response>> {
        let Some(done) = known.get(producer).filter(|p| p.sequence >= sequence) else {
            return Ok(None);
        };
        if done.sequence > sequence {
            bail!(
                Request,
                "ingest into `{stream}` refused, nothing was stored: producer `{producer}` already stored sequence {}, after this request's {sequence}",
                done.sequence
            );
        }
        Ok(Some(Response::Ingested {
            events: done.events,
            first_seq: done.first_seq,
            entries: done.entries,
            duplicate: true,
        }))
    }

    /// What storing `produced` for `producer` writes.
    fn record(known: &Known, producer: &str, produced: Produced) -> Recorded {
        // The oldest producer leaves when the window is full.
        let left = (known.len() >= MAX_PRODUCERS && !known.contains_key(producer))
            .then(|| {
                known
                    .iter()
                    .min_by_key(|(_, p)| p.first_seq)
                    .map(|(name, _)| name.clone())
            })
            .flatten();
        // The record's JSON, written out: nothing here can fail.
        let value = format!(
            "{{\"sequence\":{},\"first_seq\":{},\"events\":{},\"entries\":{}}}",
            produced.sequence, produced.first_seq, produced.events, produced.entries
        );
        Recorded {
            records: vec![(producer.to_string(), value)],
            evicted: left.into_iter().collect(),
            produced,
        }
    }

    fn remember(known: &mut Known, recorded: Recorded) {
        for old in &recorded.evicted {
            known.remove(old);
        }
        if let Some((producer, _)) = recorded.records.into_iter().next() {
            known.insert(producer, recorded.produced);
        }
    }

    /// In a cluster, at the primary: the answer a producer's request gets
    /// if it was stored already.
    pub(super) fn check(
        &self,
        streams: &Streams,
        info: &StreamInfo,
        producer: &str,
        sequence: u64,
    ) -> Result<Option<Response>> {
        let mut all = self.lock();
        let known = Self::load(&mut all, streams, info.id)?;
        Self::again(known, &info.name, producer, sequence)
    }

    /// In a cluster, at the primary: the records storing a request of
    /// `producer` writes (after [`Producers::check`]).
    pub(super) fn plan(
        &self,
        streams: &Streams,
        info: &StreamInfo,
        producer: &str,
        sequence: u64,
        (first_seq, parsed): (u64, &Parsed),
    ) -> Result<Recorded> {
        let mut all = self.lock();
        let known = Self::load(&mut all, streams, info.id)?;
        let produced = Produced {
            sequence,
            first_seq,
            events: parsed.events,
            entries: parsed.entries.len() as u64,
        };
        Ok(Self::record(known, producer, produced))
    }

    /// Notes records stored here (after [`Producers::plan`]).
    pub(super) fn stored(
        &self,
        streams: &Streams,
        info: &StreamInfo,
        recorded: Recorded,
    ) -> Result<()> {
        let mut all = self.lock();
        let known = Self::load(&mut all, streams, info.id)?;
        Self::remember(known, recorded);
        Ok(())
    }

    /// Forgets what was loaded of stream `id`'s producers: another member
    /// wrote records of it here.
    pub(super) fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }
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
    let parsed = parse_ingest(&info, origin, body)?;
    let (events, count) = (parsed.events, parsed.entries.len() as u64);
    let Some((producer, sequence)) = from else {
        let (first_seq, ticket) = streams.append(info.id, parsed.entries)?;
        ticket.wait()?;
        return Ok(Response::Ingested {
            events,
            first_seq,
            entries: count,
            duplicate: false,
        });
    };
    let mut all = producers.lock();
    let known = Producers::load(&mut all, streams, info.id)?;
    if let Some(answer) = Producers::again(known, stream, &producer, sequence)? {
        drop(all);
        // The first request may still be on its way to the disk.
        streams.commit_meta(Vec::new())?.wait()?;
        return Ok(answer);
    }
    let mut recorded = None;
    let (first_seq, ticket) = streams.append_with(info.id, parsed.entries, |first_seq| {
        let produced = Produced {
            sequence,
            first_seq,
            events,
            entries: count,
        };
        let r = Producers::record(known, &producer, produced);
        let ops = r.ops(info.id);
        recorded = Some(r);
        ops
    })?;
    if let Some(r) = recorded {
        Producers::remember(known, r);
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
