//! Deterministic stand-ins for the nondeterministic WASI interfaces: clocks that
//! read event time and a random source seeded from the stage and position.
//!
//! The host sets both before every call, so a replay of the same input makes
//! the same calls see the same values.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The event time (microseconds) the clocks of one instance report.
#[derive(Debug, Clone, Default)]
pub struct EventClock(Arc<AtomicI64>);

impl EventClock {
    /// Sets the time reported until the next call to `set`.
    pub fn set(&self, micros: i64) {
        self.0.store(micros, Ordering::Relaxed);
    }
    /// The time reported now.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    fn micros(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
    }
}

impl HostWallClock for EventClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn now(&self) -> Duration {
        Duration::from_micros(self.micros())
    }
}

impl HostMonotonicClock for EventClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.micros().saturating_mul(1_000)
    }
}

/// A splitmix64 generator whose state the host reseeds before every call.
#[derive(Debug, Clone, Default)]
pub struct SeededRandom(Arc<AtomicU64>);

impl SeededRandom {
    /// Reseeds from a stage identity and a position in its input.
    pub fn reseed(&self, stage: &str, position: u64) {
        let mut seed = 0xcbf2_9ce4_8422_2325u64;
        for b in stage.as_bytes() {
            seed = (seed ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0.store(
            seed ^ position.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            Ordering::Relaxed,
        );
    }

    /// The generator's state: the sequence carries on from a state it is set to.
    pub fn state(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the state [`SeededRandom::state`] returned.
    pub fn set_state(&self, state: u64) {
        self.0.store(state, Ordering::Relaxed);
    }

    fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.next() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_other_position_other_numbers() {
        let a = SeededRandom::default();
        a.reseed("stage", 7);
        let first: Vec<u64> = (0..4).map(|_| a.next()).collect();
        a.reseed("stage", 7);
        let again: Vec<u64> = (0..4).map(|_| a.next()).collect();
        assert_eq!(first, again);
        a.reseed("stage", 8);
        assert_ne!(first[0], a.next());
    }
}
