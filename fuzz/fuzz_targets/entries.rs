//! An rStream entry's stored bytes (a CTI, or a producer and an Arrow IPC
//! batch), as a copy or a restarted node reads them: decoding never
//! panics, and an entry that decodes encodes to bytes that decode to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::entry::Entry;

fuzz_target!(|bytes: &[u8]| {
    // Entry::decode turns a panic of the Arrow reader into an error; the
    // fuzzer's hook would abort inside the panic, before that. A panic
    // anywhere else still unwinds out of this closure and is a crash.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{info}"))));
    let Ok(entry) = Entry::decode(bytes) else {
        return;
    };
    let _ = weir_core::entry::identity(bytes);
    let encoded = entry.encode().expect("a decoded entry encodes");
    let back = Entry::decode(&encoded).expect("an encoded entry decodes");
    assert_eq!(back, entry, "an entry survives encode and decode");
});
