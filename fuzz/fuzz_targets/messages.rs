//! A message on a node's QUIC connection: a client's or member's request,
//! a node's answer, a cluster (Raft) message. Decoding never panics, and
//! what decodes encodes to a message that decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_net::cluster::{ClusterRequest, ClusterResponse};
use weir_net::protocol::{Request, Response};

fn again<T: serde::Serialize + for<'de> serde::Deserialize<'de>>(message: &T) {
    let bytes = serde_json::to_vec(message).expect("a decoded message encodes");
    serde_json::from_slice::<T>(&bytes).expect("an encoded message decodes");
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<Request>(bytes) {
        let _ = m.describe();
        again(&m);
    }
    if let Ok(m) = serde_json::from_slice::<Response>(bytes) {
        again(&m);
    }
    if let Ok(m) = serde_json::from_slice::<ClusterRequest>(bytes) {
        again(&m);
    }
    if let Ok(m) = serde_json::from_slice::<ClusterResponse>(bytes) {
        again(&m);
    }
});
