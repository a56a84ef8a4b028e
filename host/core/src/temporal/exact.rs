//! Exact sums of doubles, rounded once at the end.
//!
//! A running `f64` sum rounds after every addition, so its result depends
//! on the order of the values: the same window summed at parallelism 1 and
//! 2, or after a merge that interleaves partitions differently, could
//! differ in the last bits. [`ExactSum`] keeps the sum exactly, as a short
//! list of non-overlapping doubles (Shewchuk's partials, the algorithm of
//! Python's `math.fsum`), and [`ExactSum::value`] rounds it correctly once.
//! The result is a function of the multiset of values alone, whatever the
//! order they came in or how partial sums were merged.
//!
//! Infinities and NaN are summed apart (`+inf` and `-inf` give NaN). A sum
//! whose running value leaves the range of doubles becomes infinite.

use serde::{Deserialize, Serialize};

/// The exact sum of the doubles added so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    /// Non-overlapping, increasing in magnitude; their exact sum is the sum.
    partials: Vec<f64>,
    /// The sum of the infinite and NaN values (0 when there were none).
    special: f64,
}

impl ExactSum {
    /// Adds `x` exactly.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.special += x;
            return;
        }
        let mut x = x;
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            if !hi.is_finite() {
                // The running sum left the range of doubles.
                self.special += hi;
                self.partials.clear();
                return;
            }
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// Adds everything `other` holds.
    pub fn merge(&mut self, other: &ExactSum) {
        self.special += other.special;
        for &p in &other.partials {
            self.add(p);
        }
    }

    /// The sum, correctly rounded to the nearest double (ties to even).
    pub fn value(&self) -> f64 {
        if self.special != 0.0 || self.special.is_nan() {
            return self.special;
        }
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // Round half to even correctly: when the rest below `lo` pushes the
        // same way as `lo`, `hi + 2·lo` is the nearer double if it is exact.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sum(values: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        for &v in values {
            s.add(v);
        }
        s.value()
    }

    #[test]
    fn sums_that_a_running_double_gets_wrong() {
        assert_eq!(sum(&[0.1; 10]), 1.0);
        assert_ne!([0.1; 10].iter().sum::<f64>(), 1.0);
        assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(sum(&[1e16, 1.0, 1e-16]), 10000000000000002.0);
        assert_eq!(sum(&[]), 0.0);
        assert!(sum(&[f64::INFINITY, 1.0, f64::NEG_INFINITY]).is_nan());
        assert_eq!(sum(&[f64::INFINITY, 1.0]), f64::INFINITY);
        assert_eq!(sum(&[f64::MAX, f64::MAX]), f64::INFINITY);
    }

    proptest! {
        /// Any order, and any split into partial sums merged in any order,
        /// gives the same bits.
        #[test]
        fn the_order_and_the_split_do_not_matter(
            values in prop::collection::vec(-1e12f64..1e12, 0..60),
            seed in any::<u64>(),
            split in 0usize..60,
        ) {
            let whole = sum(&values);
            let mut shuffled = values.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(sum(&shuffled).to_bits(), whole.to_bits());
            let split = split.min(values.len());
            let (mut a, mut b) = (ExactSum::default(), ExactSum::default());
            values[..split].iter().for_each(|&v| a.add(v));
            values[split..].iter().for_each(|&v| b.add(v));
            b.merge(&a);
            prop_assert_eq!(b.value().to_bits(), whole.to_bits());
        }
    }
}
