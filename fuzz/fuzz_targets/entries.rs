//! An rStream entry's stored bytes (a CTI, or a producer and an Arrow IPC
//! batch), as a copy or a restarted node reads them: decoding never
//! panics, and an entry that decodes encodes to bytes that decode to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::entry::Entry;

fuzz_target!(|bytes: &[u8]| {
    let Ok(entry) = Entry::decode(bytes) else {
        return;
    };
    let _ = weir_core::entry::identity(bytes);
    let encoded = entry.encode().expect("a decoded entry encodes");
    let back = Entry::decode(&encoded).expect("an encoded entry decodes");
    assert_eq!(back, entry, "an entry survives encode and decode");
});
