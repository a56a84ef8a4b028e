//! rStream tests over real and fault-injecting storage.

use super::*;
use crate::schema::{ColumnType, event_schema};
use crate::store::{FaultyStorage, RedbStorage};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};

fn fields() -> Vec<Field> {
    vec![Field {
        name: "v".into(),
        ty: ColumnType::Int64,
        nullable: false,
    }]
}

fn batch(values: &[i64], producer: &str) -> Vec<u8> {
    let schema = event_schema(&fields());
    let n = values.len() as i64;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
        Arc::new(Int64Array::from((1..=n).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(values.to_vec())),
    ];
    Entry::Batch {
        producer: producer.into(),
        batch: RecordBatch::try_new(schema, cols).unwrap(),
    }
    .encode()
    .unwrap()
}

fn open(dir: &std::path::Path) -> Streams {
    Streams::open(Arc::new(RedbStorage::open(&dir.join("node.redb")).unwrap())).unwrap()
}

#[test]
fn entries_round_trip_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("clicks", &fields()).unwrap().id;
    let (first, ticket) = s
        .append(
            id,
            vec![batch(&[1, 2], "source"), Entry::Cti(5).encode().unwrap()],
        )
        .unwrap();
    ticket.wait().unwrap();
    assert_eq!(first, 0);
    let read = s.read(id, 0, 10).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(Entry::decode(&read[1].1).unwrap(), Entry::Cti(5));
    s.close();
    drop(s);
    let s = open(dir.path());
    let id2 = s.info("clicks").unwrap().id;
    assert_eq!(id2, id);
    assert_eq!(s.positions(id), Some((2, 2, 0)));
    let Entry::Batch { batch: b, producer } =
        Entry::decode(&s.read(id, 0, 1).unwrap()[0].1).unwrap()
    else {
        panic!("not a batch")
    };
    assert_eq!((b.num_rows(), producer.as_str()), (2, "source"));
}

#[test]
fn rewriting_dedups_and_a_different_value_names_stream_seq_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("out", &fields()).unwrap().id;
    assert_eq!(s.write(id, 0, batch(&[1], "v1")).unwrap(), Written::New);
    assert_eq!(s.write(id, 1, batch(&[2], "v1")).unwrap(), Written::New);
    // Replay writes the same again: no-op, even from a different module
    // version that computes the same result.
    assert_eq!(
        s.write(id, 0, batch(&[1], "v2")).unwrap(),
        Written::Duplicate
    );
    let err = s.write(id, 1, batch(&[3], "v2")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("stream `out` at seq 1"), "{msg}");
    assert!(msg.contains("by v1") && msg.contains("by v2"), "{msg}");
    let err = s.write(id, 5, batch(&[3], "v2")).unwrap_err();
    assert!(err.to_string().contains("next seq is 2"), "{err}");
    // Also against the store after a restart.
    s.close();
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        s.write(id, 1, batch(&[2], "v1")).unwrap(),
        Written::Duplicate
    );
    assert!(s.write(id, 1, batch(&[9], "v3")).is_err());
}

#[test]
fn a_batch_written_again_dedups_goes_on_and_refuses_gaps_and_differences() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("copy", &fields()).unwrap().id;
    let values = |from: i64, to: i64, by: &str| (from..to).map(|v| batch(&[v], by)).collect();
    assert_eq!(s.write_from(id, 0, values(0, 4, "v1")).unwrap(), 4);
    // Overlapping what the copy has: the known part is checked, the rest
    // is new (a pull resumed from an older position).
    assert_eq!(s.write_from(id, 2, values(2, 6, "v1")).unwrap(), 2);
    assert_eq!(s.write_from(id, 1, values(1, 3, "v1")).unwrap(), 0);
    // What was written reads back, durable or not yet.
    let written = s.read_written(id, 0, 100).unwrap();
    assert_eq!(written.len(), 6);
    for (seq, (at, value)) in written.iter().enumerate() {
        assert_eq!(
            (*at, value.as_slice()),
            (seq as u64, batch(&[seq as i64], "v1").as_slice())
        );
    }
    // A gap writes nothing.
    let err = s.write_from(id, 8, values(8, 9, "v1")).unwrap_err();
    assert!(err.to_string().contains("next seq is 6"), "{err}");
    // A known entry that differs writes nothing of the batch, not even
    // its new entries.
    let mut differs: Vec<Vec<u8>> = values(5, 8, "v1");
    differs[0] = batch(&[99], "v2");
    let err = s.write_from(id, 5, differs).unwrap_err();
    assert!(err.to_string().contains("stream `copy` at seq 5"), "{err}");
    assert_eq!(s.read_written(id, 0, 100).unwrap().len(), 6);
    // After a restart, against the store.
    s.close();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.write_from(id, 4, values(4, 7, "v1")).unwrap(), 1);
    assert!(s.write_from(id, 0, values(9, 10, "v3")).is_err());
}

#[test]
fn gc_bounds_what_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("x", &fields()).unwrap().id;
    for i in 0..1000 {
        s.write(id, i, batch(&[i as i64], "v")).unwrap();
    }
    assert!(s.wait_for(id, 999, Duration::from_secs(10)));
    s.gc(id, 900).unwrap();
    s.close();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.positions(id), Some((1000, 1000, 900)));
    assert!(matches!(
        s.read(id, 10, 5).unwrap_err(),
        StreamError::Collected { low: 900, .. }
    ));
    assert_eq!(s.read(id, 900, 1000).unwrap().len(), 100);
}

#[test]
fn a_cleared_copy_holds_nothing_and_fills_again_from_where_it_begins() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("x", &fields()).unwrap().id;
    for i in 0..20 {
        s.write(id, i, batch(&[i as i64], "old")).unwrap();
    }
    s.clear(id).unwrap();
    assert_eq!(s.positions(id), Some((0, 0, 0)));
    // What the writer wrote there instead is taken, not refused as a
    // determinism violation.
    s.begin_at(id, 5).unwrap();
    for i in 5..12 {
        assert_eq!(
            s.write(id, i, batch(&[-(i as i64)], "new")).unwrap(),
            Written::New
        );
    }
    assert!(s.wait_for(id, 11, Duration::from_secs(10)));
    s.close();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.positions(id), Some((12, 12, 5)));
    let got = s.read(id, 5, 100).unwrap();
    let want: Vec<(u64, Vec<u8>)> = (5..12).map(|i| (i, batch(&[-(i as i64)], "new"))).collect();
    let got: Vec<(u64, Vec<u8>)> = got.into_iter().map(|(i, e)| (i, e.to_vec())).collect();
    assert_eq!(got, want);
}

#[test]
fn a_stream_skipped_ahead_goes_on_there_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("x", &fields()).unwrap().id;
    for i in 0..10 {
        s.write(id, i, batch(&[i as i64], "v")).unwrap();
    }
    assert!(matches!(
        s.write(id, 50, batch(&[50], "v")).unwrap_err(),
        StreamError::Gap { next: 10, .. }
    ));
    // Skipping to a seq it already reached changes nothing.
    s.skip_to(id, 5).unwrap();
    assert_eq!(s.positions(id).map(|p| p.0), Some(10));
    s.skip_to(id, 50).unwrap();
    s.write(id, 50, batch(&[50], "v")).unwrap();
    assert!(s.wait_for(id, 50, Duration::from_secs(10)));
    s.close();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.positions(id), Some((51, 51, 50)));
    assert!(matches!(
        s.read(id, 3, 5).unwrap_err(),
        StreamError::Collected { low: 50, .. }
    ));
    assert_eq!(s.read(id, 50, 10).unwrap().len(), 1);
}

#[test]
fn a_fully_collected_stream_keeps_its_next_seq_and_end_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("x", &fields()).unwrap().id;
    let end = Entry::Cti(END).encode().unwrap();
    let (_, ticket) = s
        .append(id, vec![batch(&[1], "v"), batch(&[2], "v"), end])
        .unwrap();
    ticket.wait().unwrap();
    s.gc(id, 3).unwrap();
    s.close();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.positions(id), Some((3, 3, 2)));
    assert!(matches!(
        s.append(id, vec![batch(&[3], "v")]).unwrap_err(),
        StreamError::Closed(_)
    ));
}

#[test]
fn a_failing_store_refuses_writes_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let acknowledged;
    {
        // The catalog entry is commit 1; four appends are acknowledged.
        let storage = FaultyStorage::new(RedbStorage::open(&path).unwrap(), 5);
        let s = Streams::open(Arc::new(storage)).unwrap();
        let id = s.create("in", &fields()).unwrap().id;
        let mut ok = 0;
        let mut failed = None;
        for i in 0..20 {
            match s.append(id, vec![batch(&[i], "source")]) {
                Ok((_, ticket)) => match ticket.wait() {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let failed = failed.expect("the injected failure surfaces");
        assert!(failed.to_string().contains("no space left"), "{failed}");
        assert!(s.append(id, vec![batch(&[99], "source")]).is_err());
        assert!(s.failure().is_some());
        acknowledged = ok;
        s.close();
    }
    let s = open(dir.path());
    let id = s.info("in").unwrap().id;
    let (next, durable, _) = s.positions(id).unwrap();
    assert!(acknowledged >= 1);
    assert_eq!(next, acknowledged as u64);
    assert_eq!(durable, next);
}

/// A copy begun at a seq fills from there, and begins there again after a
/// restart; a stream with entries is not moved.
#[test]
fn an_empty_copy_begins_where_its_reader_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("copy", &fields()).unwrap().id;
    assert!(matches!(
        s.write(id, 40, batch(&[1], "w")),
        Err(StreamError::Gap { .. })
    ));
    s.begin_at(id, 40).unwrap();
    s.write(id, 40, batch(&[1], "w")).unwrap();
    s.write(id, 41, batch(&[2], "w")).unwrap();
    s.begin_at(id, 7).unwrap();
    s.commit_meta(Vec::new()).unwrap().wait().unwrap();
    assert_eq!(s.positions(id), Some((42, 42, 40)));
    s.close();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.positions(id), Some((42, 42, 40)));
    assert_eq!(s.read(id, 40, 10).unwrap().len(), 2);
}

/// A source resumed from a position kept elsewhere appends what a copy of
/// its stream already has again: the same entries pass, the rest are
/// appended, a different one is a determinism error naming stream and seq.
#[test]
fn appending_what_a_copy_has_again_dedups_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.create("src", &fields()).unwrap().id;
    let values = |r: std::ops::Range<i64>| r.map(|v| batch(&[v], "source")).collect::<Vec<_>>();
    s.append_at(vec![(id, 0, values(0..3))], Vec::new())
        .unwrap();
    s.append_at(vec![(id, 1, values(1..5))], Vec::new())
        .unwrap();
    assert_eq!(s.positions(id).map(|p| p.0), Some(5));
    let e = s
        .append_at(vec![(id, 4, values(9..10))], Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("src") && e.contains('4'), "{e}");
    // Both entries are described, with their producers.
    assert!(
        e.contains("written by source (1 rows starting 0..=0) and a different one now by source (1 rows starting 0..=0)"),
        "{e}"
    );
    let cti = Entry::Cti(7).encode().unwrap();
    let e = s
        .append_at(vec![(id, 4, vec![cti])], Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("now by source (CTI 7)"), "{e}");
    assert!(matches!(
        s.append_at(vec![(id, 6, values(6..7))], Vec::new()),
        Err(StreamError::Gap { .. })
    ));
}
