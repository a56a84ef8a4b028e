//! What a snapshot holds, as a restarted node or a backup member reads it:
//! the vertex's snapshot record, its patch timeline and queue, a UDF's
//! keyed-state entries and timers, and the keyed state of every built-in
//! temporal operator the example queries compile to. Restoring any bytes
//! gives the operator or an error, never a panic; a restored operator
//! takes a CTI without one.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_core::patch::{Queue, Timeline};
use weir_core::plan::{MakeTemporal, Operator};
use weir_core::udf::{KeyedState, decode_entry};
use weir_core::vertex::VertexSnapshot;
use weir_sql::{Inputs, NoComponents, compile_with};

/// Scripts whose operators cover windows, sessions, joins, top-N and
/// global aggregates.
const SCRIPTS: &[&str] = &[
    include_str!("../../queries/hopping_aggregates.wsql"),
    include_str!("../../queries/session_windows.wsql"),
    include_str!("../../queries/top_n.wsql"),
    include_str!("../../queries/inner_join.wsql"),
    include_str!("../../queries/left_join.wsql"),
    include_str!("../../queries/global_count.wsql"),
    include_str!("../../queries/tumbling_count.wsql"),
    include_str!("../../queries/lifetimes.wsql"),
    include_str!("../../queries/union_all.wsql"),
    include_str!("../../examples/nexmark/q5.wsql"),
    include_str!("../../examples/nexmark/q4.wsql"),
    include_str!("../../examples/nexmark/q8.wsql"),
];

/// The temporal operators of [`SCRIPTS`]' stages.
fn operators() -> &'static [MakeTemporal] {
    static MAKES: OnceLock<Vec<MakeTemporal>> = OnceLock::new();
    MAKES.get_or_init(|| {
        let mut makes = Vec::new();
        for text in SCRIPTS {
            let plan = compile_with(
                Path::new("fuzz.wsql"),
                text,
                Inputs::Streams,
                &NoComponents,
                1,
            )
            .expect("an example query compiles");
            for stage in plan.stages {
                if let Operator::Temporal(spec) = stage.operator {
                    makes.push(spec.make);
                }
            }
        }
        assert!(!makes.is_empty(), "the example queries have operators");
        makes
    })
}

fuzz_target!(|bytes: &[u8]| {
    let _ = postcard::from_bytes::<VertexSnapshot>(bytes);
    let _ = postcard::from_bytes::<Timeline>(bytes);
    let _ = postcard::from_bytes::<Queue>(bytes);
    let _ = decode_entry(bytes);
    let _ = weir_core::udf::decode_timers(bytes);
    let Some((&pick, rest)) = bytes.split_first() else {
        return;
    };
    let Ok(state) = postcard::from_bytes::<KeyedState>(rest) else {
        return;
    };
    let makes = operators();
    let make = &makes[usize::from(pick) % makes.len()];
    let mut op = make().expect("an operator of a compiled query is made");
    if op.restore(&state).is_ok() {
        let _ = op.on_cti(i64::MAX);
        let _ = op.take_delta();
    }
});
