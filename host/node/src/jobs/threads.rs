//! The threads of a job's vertices: UDF and union vertices over rStreams,
//! followed-file sources and exactly-once file sinks.

use super::*;
use crate::source::Chunk;

/// Test hook: a file, read at each input entry, naming a vertex and a
/// pause in milliseconds (`VERTEX MS`) that each of that vertex's input
/// entries then takes on this node, as on a slow or overloaded machine.
pub const SLOW_FILE_ENV: &str = "WEIR_TEST_SLOW_FILE";

/// How often a follower stopped for a change looks whether it may go on.
const HOLD_WAIT: Duration = Duration::from_millis(20);

/// Pauses as the file at `path` says, if it names `vertex`.
fn slow_down(path: &std::path::Path, vertex: &str) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let mut words = text.split_whitespace();
    if words.next() == Some(vertex)
        && let Some(ms) = words.next().and_then(|w| w.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

impl Jobs {
    /// Runs a vertex until it finishes (`true`) or is stopped (`false`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_vertex(
        &self,
        mut vertex: Vertex,
        inputs: &[u64],
        (output, dead, logs): (u64, u64, Option<u64>),
        key: &str,
        stop: &AtomicBool,
        status: &Shared,
    ) -> Result<bool> {
        let streams = &self.inner.streams;
        let slow = std::env::var_os(SLOW_FILE_ENV).map(std::path::PathBuf::from);
        loop {
            let (requests, follow, hold, copies) = {
                let mut s = lock(status);
                let requests = std::mem::take(&mut s.requests);
                (requests, s.follow.take(), s.hold, s.copies.take())
            };
            for request in requests {
                vertex.schedule(request);
            }
            if let Some(copies) = copies {
                vertex.copies_hold(copies);
            }
            if let Some(patches) = follow {
                vertex.follow(&patches)?;
            }
            // What status shows comes from the vertex, loaded from its
            // snapshot: a finished job shows its counts after a restart too.
            publish(&vertex, status);
            if let Some(finished) = halt(vertex.position().finished, stop) {
                return Ok(finished);
            }
            // A follower stopped for a change to its stage reads nothing
            // until the vertex it follows has made it.
            lock(status).held = hold.then_some(vertex.position().ctis);
            if hold {
                std::thread::sleep(HOLD_WAIT);
                continue;
            }
            let mut progressed = false;
            'inputs: for (i, &stream) in inputs.iter().enumerate() {
                // An input that ran ahead of another waits in the stream.
                if !vertex.reads(i) {
                    continue;
                }
                let from = vertex.position().inputs[i];
                for (seq, bytes) in streams.read_written(stream, from, READ_CHUNK)? {
                    if !vertex.reads(i) {
                        break;
                    }
                    if stopping(status) {
                        break 'inputs;
                    }
                    if let Some(path) = &slow {
                        slow_down(path, vertex.name());
                    }
                    let entry = Entry::decode(&bytes).map_err(|e| {
                        err!(File, "vertex `{}`: input {i} seq {seq}: {e}", vertex.name())
                    })?;
                    let fx = vertex.on_entry(i, seq, entry);
                    // Before the snapshot the entry may have taken: lines
                    // it numbered are written before it says they were.
                    // A failed entry's lines too: they say why.
                    self.keep_logs(&mut vertex, logs)?;
                    let mut fx = match fx {
                        Ok(fx) => fx,
                        Err(e) => {
                            lock(status).stuck_at = vertex.stuck_at(&e);
                            return Err(e.into());
                        }
                    };
                    let settled = std::mem::take(&mut fx.settled);
                    if !self.apply(fx, &settled, (output, dead), key, inputs, stop)? {
                        return Ok(false);
                    }
                    if !settled.is_empty() {
                        let mut s = lock(status);
                        s.outcomes.extend(settled);
                        while s.outcomes.len() > MAX_OUTCOMES {
                            s.outcomes.pop_first();
                        }
                    }
                    progressed = true;
                }
            }
            publish(&vertex, status);
            if !progressed && !stopping(status) {
                let wanted: Vec<(u64, u64)> = inputs
                    .iter()
                    .zip(&vertex.position().inputs)
                    .map(|(s, p)| (*s, *p))
                    .collect();
                streams.wait_any(&wanted, true, IDLE_WAIT);
            }
        }
    }

    /// Writes what the vertex's UDF logged to its log stream, each line
    /// at its number: a line logged again as the vertex replays after a
    /// crash lands where it already is. Older lines than the latest
    /// [`KEPT_LOGS`] go.
    fn keep_logs(&self, vertex: &mut Vertex, logs: Option<u64>) -> Result<()> {
        let lines = vertex.take_logs();
        let (Some(stream), Some(last)) = (logs, lines.last().map(|l| l.seq)) else {
            return Ok(());
        };
        let streams = &self.inner.streams;
        for l in lines {
            let line = serde_json::json!({
                "seq": l.seq,
                "module": l.module,
                "position": l.position,
                "cti": l.cti,
                "line": l.line,
            });
            let bytes = line.to_string().into_bytes();
            match streams.write(stream, l.seq, bytes.clone()) {
                Ok(_) => {}
                // A stage recovered by replay rebuilds its state from part
                // of its input, so what it logs again may read differently;
                // the line first written stays.
                Err(weir_store::rstream::StreamError::Determinism { .. }) => {}
                // A vertex that moved here from another member (its backup's
                // snapshot) numbers its lines on from there: a log that
                // lacks the lines before (the backup's copy of the log fell
                // behind, or it stopped when the vertex left here) goes on
                // from its first line.
                Err(weir_store::rstream::StreamError::Gap { .. }) => {
                    streams.skip_to(stream, l.seq)?;
                    streams.write(stream, l.seq, bytes)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let low = streams.positions(stream).map_or(0, |p| p.2);
        if last + 1 >= low + 2 * KEPT_LOGS {
            streams.gc(stream, last + 1 - KEPT_LOGS)?;
        }
        Ok(())
    }

    /// Stores what an entry made a vertex do: its timeline and settled
    /// requests, then its output and dead letters (`outputs`), then its
    /// snapshot. `false`: stopped before a switch it made was recorded
    /// with the coordinator (nothing is stored).
    pub(super) fn apply(
        &self,
        fx: Effects,
        settled: &[(u64, Option<String>)],
        (output, dead): (u64, u64),
        key: &str,
        inputs: &[u64],
        stop: &AtomicBool,
    ) -> Result<bool> {
        if !self.wait_lease(stop) {
            return Ok(false);
        }
        let streams = &self.inner.streams;
        let mut ops = Vec::new();
        if let Some(timeline) = &fx.timeline {
            if !self.keep_timeline(key, timeline, settled, stop)? {
                return Ok(false);
            }
            // Before the entries: some of them ran on the new version.
            ops.push(put(&timeline_key(key), postcard::to_allocvec(timeline)?));
        } else if !settled.is_empty() && !self.keep_taken(key, settled, stop)? {
            // Refused changes count as taken too: the followers of a copy
            // wait for them to be.
            return Ok(false);
        }
        if settled.is_empty() {
            if !ops.is_empty() {
                streams.commit_meta(ops)?;
            }
        } else {
            // The requests leave the queue in the commit that records them
            // in the timeline: a crash keeps one or the other, never both.
            let ids: Vec<u64> = settled.iter().map(|(id, _)| *id).collect();
            let queue_key = queue_key(key);
            self.with_queue(&queue_key, |queue| {
                queue.settle(&ids);
                ops.push(put(&queue_key, postcard::to_allocvec(queue)?));
                streams.commit_meta(ops)?;
                Ok(())
            })?;
        }
        for (stream, entries) in [(output, fx.output), (dead, fx.dead)] {
            for (seq, entry) in entries {
                let bytes = entry.encode().map_err(NodeError::encoding)?;
                streams.write(stream, seq, bytes)?;
            }
        }
        if let Some(mut snapshot) = fx.snapshot {
            let mut ops = Vec::with_capacity(2);
            let changes = std::mem::take(&mut snapshot.state);
            if self.is_backed(key) {
                // Before the commit: the log never lacks a committed change.
                self.note_changed(key, snapshot.id, &changes);
            }
            if !changes.is_empty() {
                ops.push(Op::State {
                    owner: key.to_string(),
                    changes,
                });
            }
            ops.push(put(key, postcard::to_allocvec(&snapshot)?));
            streams.commit_meta(ops)?;
            if !self.is_backed(key) {
                for (stream, pos) in inputs.iter().zip(&snapshot.inputs) {
                    self.reader_at(*stream, key, *pos);
                }
            }
        }
        Ok(true)
    }

    /// Follows a JSONL file: reads complete lines from the recorded offset and
    /// writes their batches and CTIs with the new offset in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_file(
        &self,
        spec: &SourceSpec,
        batch_size: usize,
        output: u64,
        dead: u64,
        key: &str,
        mut at: FilePosition,
        stop: &AtomicBool,
        status: &Shared,
    ) -> Result<bool> {
        let streams = &self.inner.streams;
        let mut buf = Vec::new();
        // A CSV file's header, put before each later part of the file.
        let mut header: Option<Vec<u8>> = None;
        loop {
            if let Some(finished) = halt(at.finished, stop) {
                return Ok(finished);
            }
            if !self.wait_lease(stop) {
                return Ok(false);
            }
            // A followed file reads as a plain one once its end was asked
            // for: what it holds then is the rest of its input.
            let follow =
                matches!(spec.origin, SourceOrigin::File { follow: true }) && !lock(status).ending;
            buf.clear();
            let len = match File::open(&spec.path) {
                Ok(mut file) => {
                    let len = file.metadata()?.len();
                    if len < at.offset {
                        bail!(
                            File,
                            "source `{}`: {} is {len} bytes, shorter than the {} bytes already read; a followed file may only grow",
                            spec.name,
                            spec.path.display(),
                            at.offset
                        );
                    }
                    file.seek(SeekFrom::Start(at.offset))?;
                    // At least one whole row, however long, unless the
                    // file ends first.
                    loop {
                        let before = buf.len();
                        (&mut file).take(FILE_CHUNK as u64).read_to_end(&mut buf)?;
                        if buf.len() == before || whole_rows(spec.format, &buf) > 0 {
                            break;
                        }
                        if buf.len() > MAX_LINE {
                            bail!(
                                File,
                                "source `{}`: {} line {} is longer than {} MiB",
                                spec.name,
                                spec.path.display(),
                                at.line + 1,
                                MAX_LINE >> 20
                            );
                        }
                    }
                    len
                }
                Err(e) if follow && e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "source `{}`: cannot read {}",
                            spec.name,
                            spec.path.display()
                        )
                    });
                }
            };
            let at_end = at.offset + buf.len() as u64 >= len;
            // Only whole rows, except a last row without newline at the end
            // of a file that is not followed.
            let take = match whole_rows(spec.format, &buf) {
                0 if !follow && at_end => buf.len(),
                n => n,
            };
            buf.truncate(take);
            if buf.is_empty() {
                if !follow && at_end {
                    let end = Entry::Cti(END).encode().map_err(NodeError::encoding)?;
                    at.output += 1;
                    at.finished = true;
                    streams.append_at(
                        vec![(output, at.output - 1, vec![end])],
                        vec![put(key, postcard::to_allocvec(&at)?)],
                    )?;
                    continue;
                }
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
            let mut input = std::mem::take(&mut buf);
            if spec.format == SourceFormat::Csv && at.offset > 0 {
                if header.is_none() {
                    header = csv_header(&spec.path)?;
                }
                let mut whole = header.clone().unwrap_or_default();
                whole.append(&mut input);
                input = whole;
            }
            let mut reader =
                SourceReader::from_reader(spec, batch_size, Box::new(std::io::Cursor::new(input)))?;
            if at.offset > 0 {
                reader = reader.after_lines(at.line);
            }
            let mut chunks = Vec::new();
            while let Some(chunk) = reader.next_chunk()? {
                chunks.push((chunk, reader.line()));
            }
            at.offset += take as u64;
            at.line = reader.line();
            self.write_chunks(spec, chunks, (output, dead, key), &mut at, status)?;
        }
    }

    /// Writes a source's chunks (each with the line or event number it was
    /// read up to) as batches, CTIs and dead letters, with the source's new
    /// position `at`, in one transaction.
    pub(super) fn write_chunks(
        &self,
        spec: &SourceSpec,
        chunks: Vec<(Chunk, u64)>,
        (output, dead, key): (u64, u64, &str),
        at: &mut FilePosition,
        status: &Shared,
    ) -> Result<()> {
        let mut entries = Vec::new();
        let mut letters = Vec::new();
        for (chunk, line) in chunks {
            let p = chunk
                .punctuate(spec, &mut at.cti, line)
                .map_err(|e| err!(File, "source `{}`: {e}", spec.name))?;
            letters.extend(p.rejected.iter().map(RowError::dead_letter));
            letters.extend(p.late);
            at.rows += p.rows;
            at.line = line;
            for entry in p.entries {
                entries.push(entry.encode().map_err(NodeError::encoding)?);
            }
        }
        at.rejected += letters.len() as u64;
        let dead_entries = if letters.is_empty() {
            Vec::new()
        } else {
            vec![
                Entry::Batch {
                    producer: format!("source `{}`", spec.name),
                    batch: dead_batch(&spec.name, &letters),
                }
                .encode()
                .map_err(NodeError::encoding)?,
            ]
        };
        let (out_at, dead_at) = (at.output, at.dead);
        at.output += entries.len() as u64;
        at.dead += dead_entries.len() as u64;
        self.inner.streams.append_at(
            vec![(output, out_at, entries), (dead, dead_at, dead_entries)],
            vec![put(key, postcard::to_allocvec(&*at)?)],
        )?;
        let mut s = lock(status);
        s.inputs[0].1 = match spec.origin {
            SourceOrigin::Nexmark { .. } => at.line,
            _ => at.offset,
        };
        if let Some(o) = s.output.as_mut() {
            o.1 = at.output;
        }
        s.rows_in = at.rows + at.rejected;
        s.rows_out = at.rows;
        s.dead = at.rejected;
        Ok(())
    }

    /// Writes a stream's events to a JSONL file exactly once: after each round
    /// the file is fsynced and `(next seq, length)` recorded; a restart
    /// truncates the file to the recorded length and goes on from there.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_sink(
        &self,
        input: u64,
        (path, shared): (Option<&Path>, bool),
        (interval, columns, ordered): (bool, Option<&[usize]>, bool),
        key: &str,
        mut at: SinkPosition,
        stop: &AtomicBool,
        status: &Shared,
    ) -> Result<bool> {
        let streams = &self.inner.streams;
        let mut file = match path {
            Some(path) => Some(open_sink_file(path, at.len, shared)?),
            None => None,
        };
        let mut buf = Vec::new();
        let mut order = ordered.then(|| crate::sink::Ordered::resume(at.released));
        let mut cursor = at.next;
        loop {
            if let Some(finished) = halt(at.finished, stop) {
                return Ok(finished);
            }
            if !self.wait_lease(stop) {
                return Ok(false);
            }
            let entries = streams.read(input, cursor, READ_CHUNK * 4)?;
            if entries.is_empty() {
                streams.wait_for(input, cursor, IDLE_WAIT);
                continue;
            }
            buf.clear();
            for (seq, bytes) in entries {
                match Entry::decode(&bytes).map_err(|e| err!(File, "sink input seq {seq}: {e}"))? {
                    Entry::Batch { batch, .. } => match order.as_mut() {
                        Some(order) => order.push(seq, &batch, columns, interval)?,
                        None => {
                            crate::sink::write_projected(&mut buf, &batch, columns, interval)?;
                            at.rows += batch.num_rows() as u64;
                        }
                    },
                    Entry::Cti(t) => {
                        at.finished |= t == END;
                        if let Some(order) = order.as_mut() {
                            at.rows += order.release(seq, t, &mut buf)?;
                        }
                    }
                }
                cursor = seq + 1;
            }
            at.next = order.as_ref().map_or(cursor, |o| o.resume_seq(cursor));
            at.released = order.as_ref().and_then(|o| o.released());
            if !self.wait_lease_for_file(stop) {
                return Ok(false);
            }
            if let (Some(file), Some(path)) = (file.as_mut(), path) {
                file.write_all(&buf)
                    .and_then(|()| file.sync_data())
                    .with_context(|| format!("sink: cannot write {}", path.display()))?;
                at.len += buf.len() as u64;
            }
            streams.commit_meta(vec![put(key, postcard::to_allocvec(&at)?)])?;
            if !self.is_backed(key) {
                self.reader_at(input, key, at.next);
            }
            let mut s = lock(status);
            s.inputs[0].1 = at.next;
            s.rows_in = at.rows;
            s.rows_out = at.rows;
        }
    }
}

/// Opens a node sink's file at its synced length `len`: what was written
/// after the last recorded sync is cut off (it is written again), unless
/// the file is `shared` with another instance of the sink, which may have
/// written further (the same bytes this one writes there).
pub(super) fn open_sink_file(path: &Path, len: u64, shared: bool) -> Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("sink: cannot create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("sink: cannot open {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!(
            File,
            "sink {}: not a regular file; a sink on a node needs one",
            path.display()
        );
    }
    let found = meta.len();
    if found < len {
        bail!(
            File,
            "sink {}: the file has {found} bytes but {len} were written and synced; it was changed outside Weir",
            path.display()
        );
    }
    if !shared {
        file.set_len(len)?;
    }
    file.seek(SeekFrom::Start(len))?;
    file.sync_all()?;
    Ok(file)
}

/// Shows the vertex's positions, counts and patches in its status.
pub(super) fn publish(vertex: &Vertex, status: &Shared) {
    let at = vertex.position();
    let (rows_in, rows_out, dead_rows) = vertex.counts();
    let mut s = lock(status);
    for (slot, pos) in s.inputs.iter_mut().zip(&at.inputs) {
        slot.1 = *pos;
    }
    if let Some(o) = s.output.as_mut() {
        o.1 = at.output;
    }
    s.rows_in = rows_in;
    s.rows_out = rows_out;
    s.dead = dead_rows;
    s.snapshot = at.id;
    s.ctis = at.ctis;
    s.read_cti = vertex.read_cti();
    s.patches = at.patches;
    s.module.clone_from(&at.module);
    s.filters = vertex.filter_texts();
    (s.pending, s.refused) = vertex.patch_state();
    s.switched_at = vertex.last_switch();
    s.filtered = vertex.filtered();
    if let Some((traps, usage)) = vertex.udf_usage() {
        s.traps = traps;
        s.fuel = usage.fuel;
        s.memory = usage.memory_bytes;
    }
    let now = std::time::Instant::now();
    match s.rate_mark {
        Some((at, rows)) if now.duration_since(at) >= Duration::from_secs(1) => {
            let secs = now.duration_since(at).as_secs_f64();
            s.rows_per_s = rows_in.saturating_sub(rows) as f64 / secs;
            s.rate_mark = Some((now, rows_in));
        }
        Some(_) => {}
        None => s.rate_mark = Some((now, rows_in)),
    }
}

/// Whether a follower stops reading at the next entry: it is to hold
/// for a change, or to take the timeline its vertex recorded first.
fn stopping(status: &Shared) -> bool {
    let s = lock(status);
    s.hold || s.follow.is_some()
}

/// Whether a vertex loop ends: `Some(true)` finished, `Some(false)` stopped.
pub(super) fn halt(finished: bool, stop: &AtomicBool) -> Option<bool> {
    if finished {
        Some(true)
    } else if stop.load(Ordering::Relaxed) {
        Some(false)
    } else {
        None
    }
}

/// How often a vertex that waits for its member's lease looks again.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

impl Jobs {
    /// Lets the vertices here write until `until` at most (the end of the
    /// member's lease), however late the next call comes, and a sink its
    /// file only while `margin` of that is left; `None`: the member holds
    /// no lease (it may have been declared lost, and what it wrote would
    /// be a run the cluster left), and nothing here writes.
    pub fn lease_until(&self, until: Option<std::time::Instant>, margin: Duration) {
        let nanos = until.map_or(0, |u| {
            u.saturating_duration_since(self.inner.epoch).as_nanos()
        });
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1);
        self.inner.lease_until.store(nanos, Ordering::Relaxed);
        let margin = u64::try_from(margin.as_nanos()).unwrap_or(u64::MAX);
        self.inner.file_margin.store(margin, Ordering::Relaxed);
    }

    /// Whether the vertices here may write now, with `margin` of the
    /// lease left.
    fn may_write(&self, margin: bool) -> bool {
        let until = self.inner.lease_until.load(Ordering::Relaxed);
        let margin = match margin {
            true => self.inner.file_margin.load(Ordering::Relaxed),
            false => 0,
        };
        let now = self.inner.epoch.elapsed().as_nanos() + u128::from(margin);
        until == u64::MAX || now < u128::from(until)
    }

    /// Waits while the member holds no lease, or its lease ran out
    /// ([`Jobs::lease_until`]); `false`: `stop` was set meanwhile.
    pub(super) fn wait_lease(&self, stop: &AtomicBool) -> bool {
        self.wait_to_write(stop, false)
    }

    /// [`Jobs::wait_lease`] for a sink about to write its file: with the
    /// margin left, so that the bytes land before any other member may
    /// take the sink over, even from a thread kept waiting for a core.
    pub(super) fn wait_lease_for_file(&self, stop: &AtomicBool) -> bool {
        self.wait_to_write(stop, true)
    }

    fn wait_to_write(&self, stop: &AtomicBool, margin: bool) -> bool {
        while !self.may_write(margin) {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(LEASE_WAIT);
        }
        !stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_file_is_cut_back_to_its_synced_length_unless_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out/x.jsonl");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n").expect("file");
        // Another instance wrote further: the file stays as it is.
        drop(open_sink_file(&path, 8, true).expect("opens"));
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 16);
        // Its own unsynced tail is written again: cut back.
        drop(open_sink_file(&path, 8, false).expect("opens"));
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 8);
        // Shorter than what was synced: changed outside Weir.
        let err = open_sink_file(&path, 9, true).expect_err("refused");
        assert!(err.to_string().contains("changed outside Weir"), "{err}");
    }

    /// A vertex writes only until its member's lease runs out, even when
    /// nothing looks at the lease again (its task runs late), and a sink
    /// writes its file only while the margin is left: a writer waits at
    /// its next write until stopped.
    #[test]
    fn a_vertex_stops_writing_when_the_lease_runs_out_unextended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::store::RedbStorage::open(&dir.path().join("node.redb")).expect("redb");
        let streams = Streams::open(Arc::new(storage)).expect("streams");
        let runtime = Runtime::new(None).expect("runtime");
        let jobs = Jobs::new(streams, runtime, FileAccess::default());
        // Whether `write` waited for 50 ms, and what it returned once
        // stopped (or at once).
        let waits = |write: &(dyn Fn(&AtomicBool) -> bool + Sync)| {
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                let writer = s.spawn(|| write(&stop));
                std::thread::sleep(Duration::from_millis(50));
                let waited = !writer.is_finished();
                stop.store(true, Ordering::Relaxed);
                (waited, writer.join().expect("joins"))
            })
        };
        let plain = |stop: &AtomicBool| jobs.wait_lease(stop);
        let file = |stop: &AtomicBool| jobs.wait_lease_for_file(stop);
        // A node outside a cluster needs no lease.
        assert_eq!(waits(&plain), (false, true));
        assert_eq!(waits(&file), (false, true));
        let now = std::time::Instant::now();
        jobs.lease_until(Some(now + Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(waits(&plain), (false, true), "within the lease");
        assert_eq!(waits(&file), (false, true), "with the margin left");
        jobs.lease_until(Some(now + Duration::from_secs(60)), Duration::from_secs(90));
        assert_eq!(waits(&plain), (false, true), "within the lease");
        assert_eq!(waits(&file), (true, false), "without the margin left");
        // The lease ran out and no task said so (nothing set it again).
        jobs.lease_until(Some(now), Duration::ZERO);
        assert_eq!(waits(&plain), (true, false), "past the lease");
    }
}
