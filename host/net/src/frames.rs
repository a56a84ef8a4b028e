//! The data plane's binary frames: rStream entries moving from the member
//! that writes a stream to a member whose vertex reads it.
//!
//! A reader opens one bidirectional QUIC stream with
//! [`crate::protocol::Request::Pull`] and then receives batches, each one
//! frame: `u32` length of the rest, `u64` seq of the first entry, `u32`
//! entry count, and per entry a `u32` length and its stored bytes (the
//! entry exactly as the writer's rStream holds it). It sends back `u64`
//! acknowledgements: every entry below that seq is durable in its copy,
//! so the writer may collect it. QUIC's flow control on the stream bounds
//! what is in flight: a reader that stops reading stops the writer's sender.
//!
//! Every length is checked against the bytes that are there and against
//! [`MAX_BATCH`], so a malformed or truncated frame is an error, never a
//! panic or an unbounded allocation.

use crate::error::{NetError, Result};

/// The largest batch frame a reader accepts.
pub const MAX_BATCH: usize = 64 << 20;

/// A decoded batch: the seq of its first entry and the entries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    /// Seq of the first entry.
    pub first: u64,
    /// The entries' stored bytes.
    pub entries: Vec<&'a [u8]>,
}

/// Appends the frame of a batch starting at seq `first` to `out`.
pub fn encode_batch<'a>(
    first: u64,
    entries: impl IntoIterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&first.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut count = 0u32;
    for entry in entries {
        out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        out.extend_from_slice(entry);
        count += 1;
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
}

fn malformed(what: String) -> NetError {
    NetError::Invalid(format!("malformed entry batch: {what}"))
}

/// Takes `n` bytes at `*at` of `body`, naming `what` when they are not there.
fn take<'a>(body: &'a [u8], at: &mut usize, n: usize, what: &str) -> Result<&'a [u8]> {
    let end = at
        .checked_add(n)
        .filter(|end| *end <= body.len())
        .ok_or_else(|| {
            malformed(format!(
                "{what} needs {n} bytes at offset {at}, the frame has {}",
                body.len()
            ))
        })?;
    let bytes = &body[*at..end];
    *at = end;
    Ok(bytes)
}

fn u32_at(body: &[u8], at: &mut usize, what: &str) -> Result<u32> {
    let b = take(body, at, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes a batch frame's body (what follows its length).
pub fn decode_batch(body: &[u8]) -> Result<Batch<'_>> {
    let mut at = 0;
    let first = take(body, &mut at, 8, "the first seq")?;
    let first = u64::from_le_bytes(first.try_into().map_err(|_| malformed("seq".into()))?);
    let count = u32_at(body, &mut at, "the entry count")? as usize;
    // Each entry takes at least its 4-byte length: a count beyond that is a lie.
    if count > (body.len() - at) / 4 {
        return Err(malformed(format!(
            "{count} entries cannot fit in {} bytes",
            body.len() - at
        )));
    }
    if first.checked_add(count as u64).is_none() {
        return Err(malformed(format!(
            "{count} entries from seq {first} overflow the seq range"
        )));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let len = u32_at(body, &mut at, "an entry length")? as usize;
        entries.push(take(body, &mut at, len, &format!("entry {i}"))?);
    }
    if at != body.len() {
        return Err(malformed(format!(
            "{} bytes after the last entry",
            body.len() - at
        )));
    }
    Ok(Batch { first, entries })
}

/// Reads one batch frame's body; `None` when the writer finished the stream.
pub async fn read_batch(recv: &mut quinn::RecvStream, buf: &mut Vec<u8>) -> Result<Option<()>> {
    crate::protocol::read_frame(recv, buf, MAX_BATCH, "a batch").await
}

/// Sends an acknowledgement: every entry below `seq` is durable.
pub async fn write_ack(send: &mut quinn::SendStream, seq: u64) -> Result<()> {
    send.write_all(&seq.to_le_bytes()).await?;
    Ok(())
}

/// Reads an acknowledgement; `None` when the reader finished its side.
pub async fn read_ack(recv: &mut quinn::RecvStream) -> Result<Option<u64>> {
    let mut seq = [0u8; 8];
    match recv.read_exact(&mut seq).await {
        Ok(()) => Ok(Some(u64::from_le_bytes(seq))),
        Err(quinn::ReadExactError::FinishedEarly(0)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_to_what_was_encoded() {
        let entries: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), vec![7; 1000]];
        let mut out = Vec::new();
        encode_batch(41, entries.iter().map(|e| e.as_slice()), &mut out);
        let len = u32::from_le_bytes(out[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, out.len() - 4);
        let batch = decode_batch(&out[4..]).expect("decodes");
        assert_eq!(batch.first, 41);
        let got: Vec<Vec<u8>> = batch.entries.iter().map(|e| e.to_vec()).collect();
        assert_eq!(got, entries);
    }

    #[test]
    fn every_truncation_and_lie_is_an_error() {
        let mut out = Vec::new();
        encode_batch(5, [b"abc".as_slice(), b"defgh".as_slice()], &mut out);
        let body = &out[4..];
        for cut in 0..body.len() {
            let e = decode_batch(&body[..cut]).expect_err("a truncated frame is refused");
            assert!(e.to_string().contains("malformed entry batch"), "{e}");
        }
        let mut long = body.to_vec();
        long.push(0);
        assert!(decode_batch(&long).is_err(), "trailing bytes");
        let mut many = body.to_vec();
        many[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decode_batch(&many).expect_err("a count beyond the bytes");
        assert!(e.to_string().contains("cannot fit"), "{e}");
        let mut huge = body.to_vec();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            decode_batch(&huge).is_err(),
            "an entry longer than the frame"
        );
        let mut wrap = body.to_vec();
        wrap[..8].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        let e = decode_batch(&wrap).expect_err("seqs past u64");
        assert!(e.to_string().contains("overflow"), "{e}");
    }
}
