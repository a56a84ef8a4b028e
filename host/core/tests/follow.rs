//! A vertex that follows another instance of itself (in a cluster, a replica
//! or a drain's or straggler's duplicate): it makes no change of its own but
//! takes the switches the vertex recorded, at the positions recorded. One
//! that stopped before the switch writes, entry for entry, what the vertex
//! wrote; one that read past it is refused, saying where each stands. Native
//! closures stand in for the module versions.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use weir_core::entry::Entry;
use weir_core::patch::{Change, Patch, Requested, Timeline};
use weir_core::plan::{ErrorPolicy, Recovery, StageKind, UdfSpec};
use weir_core::schema::{ColumnType, Field, event_schema, field};
use weir_core::stage::UdfStage;
use weir_core::udf::{
    Limits, ModuleVersion, NativeCall, NativeResult, NativeUdf, OutputColumn, Signature, UdfOutput,
};
use weir_core::vertex::{Operator, Resume, Vertex};

fn fields() -> Vec<Field> {
    vec![field("n", ColumnType::Int64, false)]
}

/// The version of the module named `name` (`add1`, `add2`: adds 1 or 2).
fn version(name: &str) -> String {
    ModuleVersion::of(name.as_bytes()).hex().to_string()
}

/// A processor writing `n + k` as `m`, for module `add{k}`.
fn stage(name: &str) -> UdfStage {
    let k: i64 = name.trim_start_matches("add").parse().expect("add{k}");
    let signature = Signature {
        reads: fields(),
        reads_interval: false,
        writes: vec![field("m", ColumnType::Int64, false)],
        passthrough: false,
    };
    let udf = NativeUdf::new(
        name,
        signature,
        move |call: NativeCall<'_>| -> NativeResult {
            let n = call.batch.column(call.reads[0]).as_primitive::<Int64Type>();
            let m: Vec<i64> = n.values().iter().map(|v| v + k).collect();
            let output = UdfOutput {
                parents: (0..m.len() as u32).collect(),
                columns: vec![OutputColumn::Written(Arc::new(Int64Array::from(m)))],
            };
            Ok((output, Vec::new()))
        },
    );
    let spec = UdfSpec {
        args: Vec::new(),
        kind: StageKind::Processor,
        component: format!("native:{name}").into(),
        params: Vec::new(),
        key: None,
        output: None,
        on_trap: ErrorPolicy::Fail,
        limits: Limits::default(),
    };
    UdfStage::new("p", &spec, Box::new(udf), event_schema(&fields())).expect("stage")
}

/// An instance of vertex `p` on module `add1`, loading `add2` by version.
fn instance() -> Vertex {
    instance_with(Timeline::new(&version("add1")))
}

/// An instance of vertex `p` that replays `timeline` from the start.
fn instance_with(timeline: Timeline) -> Vertex {
    let load = Box::new(|v: &str| {
        Ok(match v == version("add2") {
            true => stage("add2"),
            false => stage("add1"),
        })
    });
    Vertex::load(
        "p",
        Operator::Udf(Box::new(stage("add1"))),
        event_schema(&fields()),
        1,
        Recovery::Checkpoint { every: 1 },
        Resume::Fresh(vec![0]),
    )
    .expect("vertex")
    .with_patching(timeline, load)
    .expect("patching")
}

/// An instance asked for a deploy after input entry 3 and fed to entry 9,
/// with the timeline it recorded as it switched.
fn deployed_at_entry_3() -> (Vertex, Timeline) {
    let mut vertex = instance();
    feed(&mut vertex, 0, 3);
    vertex.schedule(Requested {
        id: 0,
        version: version("add2"),
        change: Change::Deploy,
        at_ms: 1,
    });
    let (_, recorded) = feed(&mut vertex, 3, 9);
    (vertex, recorded.expect("the vertex switched"))
}

/// Input entry `i`: a batch of four events, every third entry a CTI.
fn entry(i: u64) -> Entry {
    if i % 3 == 2 {
        return Entry::Cti(i as i64 * 10);
    }
    let t = i as i64 * 10;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![t; 4])),
        Arc::new(Int64Array::from(vec![t + 1; 4])),
        Arc::new(Int64Array::from_iter_values(
            (0..4).map(|r| i as i64 * 100 + r),
        )),
    ];
    let batch = RecordBatch::try_new(event_schema(&fields()), columns).expect("batch");
    Entry::Batch {
        producer: "test".into(),
        batch,
    }
}

/// Feeds input entries `from..to`; returns each output entry encoded, by
/// seq, and the timeline when an entry switched.
fn feed(v: &mut Vertex, from: u64, to: u64) -> (Vec<(u64, Vec<u8>)>, Option<Timeline>) {
    let mut out = Vec::new();
    let mut timeline = None;
    for seq in from..to {
        let fx = v.on_entry(0, seq, entry(seq)).expect("entry");
        for (s, e) in fx.output {
            out.push((s, e.encode().expect("encode")));
        }
        timeline = fx.timeline.or(timeline);
    }
    (out, timeline)
}

/// The vertex takes a deploy at a CTI past where its follower stopped;
/// the follower takes the recorded switch and writes the same entries.
#[test]
fn a_follower_stopped_before_the_switch_writes_what_its_vertex_wrote() {
    let (mut vertex, mut follower) = (instance(), instance());
    let (mut want, _) = feed(&mut vertex, 0, 7);
    // The follower stops after entry 4 (one CTI written); the vertex is
    // asked for the change after entry 7, so it makes it at a later CTI.
    let (mut got, _) = feed(&mut follower, 0, 5);
    vertex.schedule(Requested {
        id: 0,
        version: version("add2"),
        change: Change::Deploy,
        at_ms: 1,
    });
    let (rest, recorded) = feed(&mut vertex, 7, 20);
    want.extend(rest);
    let recorded = recorded.expect("the vertex switched").patches;
    assert!(recorded[0].ctis > follower.position().ctis, "{recorded:?}");
    follower
        .follow(&recorded)
        .expect("a follower behind the switch");
    // Sent again (the member looks every tick): nothing changes.
    follower.follow(&recorded).expect("the same timeline");
    got.extend(feed(&mut follower, 5, 20).0);
    assert_eq!(got, want, "the follower wrote other entries");
    assert_eq!(follower.switches().len(), 1);
    assert_eq!(follower.position().module, vertex.position().module);
    // A version that added 2 from the switch on: the output shows it.
    let m = |entry: &[u8]| match Entry::decode(entry).expect("decode") {
        Entry::Batch { batch, .. } => Some(
            batch
                .column_by_name("m")
                .expect("m")
                .as_primitive::<Int64Type>()
                .value(0),
        ),
        Entry::Cti(_) => None,
    };
    let last = want.iter().rev().find_map(|(_, e)| m(e)).expect("a batch");
    assert_eq!(last, 19 * 100 + 2);
}

/// A follower that read past where its vertex switched has written what
/// the vertex did not: it is refused, with both positions; so is a
/// timeline that does not begin with the follower's own.
#[test]
fn a_follower_past_the_switch_or_with_another_timeline_is_refused() {
    let (_, recorded) = deployed_at_entry_3();
    let mut follower = instance();
    let recorded = recorded.patches;
    feed(&mut follower, 0, 12);
    let refused = follower.follow(&recorded).expect_err("passed the switch");
    let said = refused.to_string();
    assert!(
        said.contains("which this instance passed") && said.contains("input position"),
        "{said}"
    );
    let mut other = instance();
    let elsewhere = vec![Patch {
        position: recorded[0].position + 4,
        ..recorded[0].clone()
    }];
    let beyond = [elsewhere[0].clone(), recorded[0].clone()];
    other.follow(&elsewhere).expect("ahead of the follower");
    let said = other
        .follow(&beyond[1..])
        .expect_err("another timeline")
        .to_string();
    assert!(said.contains("is not the beginning"), "{said}");
}

/// An instance restored from a snapshot that held a request queued (the
/// instance before it queued it, then made it) takes over a timeline
/// with that switch: it makes the switch where recorded, once, and
/// settles the request as made instead of making it again.
#[test]
fn a_queued_request_the_followed_timeline_made_is_settled_not_made_twice() {
    let (mut vertex, mut follower) = (instance(), instance());
    let request = Requested {
        id: 0,
        version: version("add2"),
        change: Change::Deploy,
        at_ms: 1,
    };
    let (mut want, _) = feed(&mut vertex, 0, 4);
    vertex.schedule(request.clone());
    let (rest, recorded) = feed(&mut vertex, 4, 20);
    want.extend(rest);
    let recorded = recorded.expect("the vertex switched").patches;
    let (mut got, _) = feed(&mut follower, 0, 4);
    follower.schedule(request);
    follower
        .follow(&recorded)
        .expect("a follower behind the switch");
    let mut settled = Vec::new();
    for seq in 4..20 {
        let fx = follower.on_entry(0, seq, entry(seq)).expect("entry");
        settled.extend(fx.settled);
        got.extend(
            fx.output
                .into_iter()
                .map(|(s, e)| (s, e.encode().expect("encode"))),
        );
    }
    assert_eq!(got, want, "the instance wrote other entries");
    assert_eq!(follower.switches(), recorded.as_slice(), "switched once");
    assert_eq!(settled, vec![(0, None)], "the request settled as made");
}

/// A vertex waiting for the other members' copies of its output makes no
/// requested change until told how far they hold it, and then only once
/// it has written past that.
#[test]
fn a_change_waits_for_the_copies_of_the_output_and_goes_past_them() {
    let mut vertex = instance();
    vertex.await_copies();
    vertex.schedule(Requested {
        id: 0,
        version: version("add2"),
        change: Change::Deploy,
        at_ms: 1,
    });
    let (_, made) = feed(&mut vertex, 0, 9);
    assert!(made.is_none(), "no copy said how far it holds the output");
    let at = vertex.position().output;
    vertex.copies_hold(Some((at + 6, 0)));
    let (_, made) = feed(&mut vertex, 9, 12);
    assert!(made.is_none(), "not yet past the copies");
    let (_, made) = feed(&mut vertex, 12, 30);
    assert!(made.is_some(), "past the copies");
    assert!(vertex.position().output >= at + 6);
}

/// A timeline replayed over input cut otherwise than where it was
/// recorded: the switch lies inside a batch, so the instance reads past it
/// before it could make it. It fails, naming the switch and both
/// positions, instead of writing rows the recorded run took at the new
/// version with the old one.
#[test]
fn a_switch_replayed_inside_a_batch_is_refused_not_made_late() {
    let (vertex, mut timeline) = deployed_at_entry_3();
    // The same timeline replays as recorded.
    let mut again = instance_with(timeline.clone());
    feed(&mut again, 0, 20);
    assert_eq!(again.switches(), timeline.patches.as_slice());
    assert_eq!(again.position().module, vertex.position().module);
    // Two rows into the batch that starts where the switch was made.
    timeline.patches[0].position += 2;
    let mut replay = instance_with(timeline);
    let refused = (0..20)
        .find_map(|seq| replay.on_entry(0, seq, entry(seq)).err())
        .expect("the switch inside a batch is refused");
    let said = refused.to_string();
    assert!(
        said.contains("read past without making it")
            && said.contains("deploy")
            && said.contains(&version("add2")[..12]),
        "{said}"
    );
}
