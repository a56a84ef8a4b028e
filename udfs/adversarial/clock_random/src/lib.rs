//! Adversarial: reads the wall clock, the monotonic clock and random numbers.
//! Under Weir all three must be deterministic.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use weir_sdk::Row;

#[derive(Row, Clone, Debug)]
pub struct Item {
    pub id: i64,
}

#[derive(Row, Clone, Debug)]
pub struct Stamp {
    pub id: i64,
    pub now_us: i64,
    pub monotonic_ns: i64,
    pub random: i64,
}

thread_local! {
    static EPOCH: Instant = Instant::now();
}

pub fn stamp(item: Item) -> Stamp {
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(-1);
    let monotonic_ns = EPOCH.with(|e| e.elapsed().as_nanos() as i64);
    // RandomState draws its keys from the host's random source.
    let random = RandomState::new().hash_one(item.id) as i64;
    Stamp {
        id: item.id,
        now_us,
        monotonic_ns,
        random,
    }
}

weir_sdk::export_map!(stamp);
