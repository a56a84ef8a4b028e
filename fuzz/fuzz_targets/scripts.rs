//! A query script as `weir run` and `weir job submit` compile it: parsing,
//! binding and lowering any text gives a plan or an error, never a panic
//! or a hang.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir_sql::{Inputs, NoComponents, compile_with};

fuzz_target!(|bytes: &[u8]| {
    let Some((&first, rest)) = bytes.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let parallelism = 1 + usize::from(first % 4);
    let inputs = if first & 0x80 == 0 {
        Inputs::Streams
    } else {
        Inputs::Files
    };
    let _ = compile_with(
        Path::new("fuzz.wsql"),
        text,
        inputs,
        &NoComponents,
        parallelism,
    );
});
