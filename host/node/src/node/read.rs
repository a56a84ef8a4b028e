//! `weir stream list` and `weir stream read`: a node's streams and their
//! entries as JSON lines, in bounded frames.

use super::*;

impl Node {
    pub(super) fn list(&self) -> Vec<StreamSummary> {
        self.streams
            .list()
            .into_iter()
            .map(|info| {
                let (next, _, low) = self.streams.positions(info.id).unwrap_or_default();
                StreamSummary {
                    columns: describe(&info.fields()),
                    name: info.name,
                    next,
                    low,
                }
            })
            .collect()
    }

    pub(super) async fn read(
        &self,
        mut send: quinn::SendStream,
        stream: &str,
        from: u64,
        follow: bool,
    ) -> Result<()> {
        let info = match self.streams.info(stream) {
            Ok(info) => info,
            Err(e) => {
                send_error(&mut send, &e).await?;
                send.finish()?;
                return Ok(());
            }
        };
        let mut position = from;
        loop {
            let entries = match self.streams.read(info.id, position, READ_CHUNK) {
                Ok(entries) => entries,
                Err(e) => {
                    send_error(&mut send, &e).await?;
                    break;
                }
            };
            if entries.is_empty() {
                if !follow {
                    write_msg(&mut send, &Response::End).await?;
                    break;
                }
                let streams = self.streams.clone();
                let (id, at) = (info.id, position);
                let arrived = tokio::task::spawn_blocking(move || {
                    streams.wait_for(id, at, Duration::from_millis(500))
                });
                tokio::select! {
                    // A reader that went away ends the follow.
                    _ = send.stopped() => break,
                    waited = arrived => { waited?; }
                }
                continue;
            }
            let mut text = Vec::new();
            for (seq, bytes) in &entries {
                format_entry(&mut text, *seq, bytes)
                    .with_context(|| format!("stream `{stream}` seq {seq}"))?;
                position = seq + 1;
                if text.len() >= LINES_FRAME {
                    send_lines(&mut send, &text).await?;
                    text.clear();
                }
            }
            send_lines(&mut send, &text).await?;
        }
        send.finish()?;
        let _ = send.stopped().await;
        Ok(())
    }
}

/// Sends `text` (JSON lines) in `Lines` answers of at most [`LINES_FRAME`]
/// bytes each, cut at character boundaries: a stream of any size, or one
/// huge row, reads back in bounded frames.
pub(super) async fn send_lines(send: &mut quinn::SendStream, text: &[u8]) -> Result<()> {
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(LINES_FRAME);
        // Back to the start of a UTF-8 character (never more than 3 bytes).
        while cut < rest.len() && cut > 0 && (rest[cut] & 0xc0) == 0x80 {
            cut -= 1;
        }
        let (frame, after) = rest.split_at(cut);
        write_msg(
            send,
            &Response::Lines(String::from_utf8_lossy(frame).into_owned()),
        )
        .await?;
        rest = after;
    }
    Ok(())
}

/// One JSON line per event, `{"_seq":N,...}`, and `{"_seq":N,"_cti":T}` per CTI.
/// A log stream's entries are JSON lines already, and read as they are.
pub fn format_entry(out: &mut Vec<u8>, seq: u64, bytes: &[u8]) -> Result<()> {
    if let Some(rest) = bytes.strip_prefix(b"{") {
        out.extend_from_slice(format!("{{\"_seq\":{seq},").as_bytes());
        out.extend_from_slice(rest);
        out.push(b'\n');
        return Ok(());
    }
    match Entry::decode(bytes).map_err(NodeError::encoding)? {
        Entry::Cti(t) => {
            out.extend_from_slice(format!("{{\"_seq\":{seq},\"_cti\":{t}}}\n").as_bytes());
        }
        Entry::Batch { batch, .. } => {
            let mut lines = Vec::new();
            crate::sink::write_jsonl(&mut lines, &batch, true)?;
            let prefix = format!("{{\"_seq\":{seq},");
            for line in lines.split_inclusive(|b| *b == b'\n') {
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(line.get(1..).unwrap_or_default());
            }
        }
    }
    Ok(())
}
