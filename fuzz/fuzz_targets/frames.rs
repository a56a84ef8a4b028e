//! A batch frame of the data plane, as a reader receives it from a member:
//! decoding never panics, and what decodes encodes back to the same bytes;
//! each entry it carries decodes as a stored entry or is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_net::frames::{decode_batch, encode_batch};

fuzz_target!(|body: &[u8]| {
    let Ok(batch) = decode_batch(body) else {
        return;
    };
    let mut again = Vec::new();
    encode_batch(batch.first, batch.entries.iter().copied(), &mut again);
    // The encoding starts with the length of the rest.
    assert_eq!(&again[4..], body, "a decoded frame encodes back to itself");
    for entry in &batch.entries {
        let _ = weir_core::entry::Entry::decode(entry);
    }
});
