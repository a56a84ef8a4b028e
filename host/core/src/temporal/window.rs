//! Windows as lifetime operations: which windows an event belongs to.

use serde::{Deserialize, Serialize};

/// Hopping windows `[k·hop, k·hop + size)` for every integer `k`; tumbling
/// windows are the ones whose hop equals their size. Times are event-time
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hopping {
    size: i64,
    hop: i64,
}

/// A window that cannot be: a size or hop that is not positive, or a hop
/// larger than the size (events between windows would belong to none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window size {size} µs and hop {hop} µs: {why}")]
pub struct WindowError {
    /// The size given.
    pub size: i64,
    /// The hop given.
    pub hop: i64,
    /// What is wrong.
    pub why: &'static str,
}

impl Hopping {
    /// Windows of `size` starting every `hop` (both µs, positive, `hop <= size`).
    pub fn new(size: i64, hop: i64) -> Result<Hopping, WindowError> {
        let why = if size <= 0 {
            "the size must be positive"
        } else if hop <= 0 {
            "the hop must be positive"
        } else if hop > size {
            "the hop must not be larger than the size (events between windows would be in none)"
        } else {
            return Ok(Hopping { size, hop });
        };
        Err(WindowError { size, hop, why })
    }

    /// Tumbling windows of `size`.
    pub fn tumbling(size: i64) -> Result<Hopping, WindowError> {
        Hopping::new(size, size)
    }

    /// The window size (µs).
    pub fn size(&self) -> i64 {
        self.size
    }

    /// The hop (µs).
    pub fn hop(&self) -> i64 {
        self.hop
    }

    /// The end of the window that starts at `start`, saturating at the end
    /// of time.
    pub fn end_of(&self, start: i64) -> i64 {
        start.saturating_add(self.size)
    }

    /// The starts of the windows an event with lifetime `[start, end)`
    /// overlaps, earliest first: every `k·hop` with `k·hop < end` and
    /// `k·hop + size > start`. An empty lifetime overlaps none.
    pub fn starts(&self, start: i64, end: i64) -> impl Iterator<Item = i64> + use<> {
        let hop = self.hop;
        // The first k with k·hop + size > start, i.e. k > (start - size) / hop.
        let first = (start as i128 - self.size as i128).div_euclid(hop as i128) + 1;
        // The last k with k·hop < end, i.e. k ≤ (end - 1) / hop.
        let last = (end as i128 - 1).div_euclid(hop as i128);
        let (first, last) = if end <= start { (1, 0) } else { (first, last) };
        (first..=last).filter_map(move |k| i64::try_from(k * hop as i128).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_point_event_is_in_size_over_hop_windows() {
        let w = Hopping::new(10, 2).expect("window");
        let starts: Vec<i64> = w.starts(13, 14).collect();
        assert_eq!(starts, [4, 6, 8, 10, 12]);
        let t = Hopping::tumbling(5).expect("window");
        assert_eq!(t.starts(5, 6).collect::<Vec<_>>(), [5]);
        assert_eq!(t.starts(4, 6).collect::<Vec<_>>(), [0, 5]);
        assert_eq!(t.starts(-1, 0).collect::<Vec<_>>(), [-5]);
        assert_eq!(t.starts(3, 3).count(), 0, "an empty lifetime");
    }

    #[test]
    fn impossible_windows_are_refused() {
        assert!(Hopping::new(0, 1).is_err());
        assert!(Hopping::new(5, 0).is_err());
        let e = Hopping::new(5, 6).expect_err("hop > size");
        assert!(e.to_string().contains("hop must not be larger"), "{e}");
    }

    proptest! {
        /// The windows listed are exactly those, among all nearby ones,
        /// whose interval overlaps the event's.
        #[test]
        fn starts_are_the_overlapping_windows(
            size in 1i64..50,
            hop_part in 1i64..50,
            start in -200i64..200,
            len in 0i64..120,
        ) {
            let hop = hop_part.min(size);
            let w = Hopping::new(size, hop).expect("window");
            let end = start + len;
            let got: Vec<i64> = w.starts(start, end).collect();
            let want: Vec<i64> = (-400i64..400)
                .map(|k| k * hop)
                .filter(|s| *s < end && s + size > start && start < end)
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
