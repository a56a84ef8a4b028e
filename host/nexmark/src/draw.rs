//! The random draws of one event: SplitMix64 seeded by (seed, event id),
//! and the values Nexmark draws with it, computed with IEEE additions,
//! multiplications and divisions only (no platform math library), so they
//! are the same bits everywhere.

use std::fmt::Write;

/// The draws of one event.
pub(crate) struct Draw {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Draw {
    /// The draws of event `id` under `seed`.
    pub(crate) fn new(seed: u64, id: u64) -> Draw {
        Draw {
            state: mix(seed.wrapping_add(GOLDEN)) ^ mix(id.wrapping_mul(GOLDEN).wrapping_add(1)),
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A whole number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A price in cents, log-uniform from 100 ($1) to 100,000,000.
    pub(crate) fn price(&mut self) -> i64 {
        (pow10(self.unit() * 6.0) * 100.0).round() as i64
    }

    /// A word of 3 to `max - 1` characters, lowercase letters with a space
    /// in about one of 13, trimmed, appended to `out`.
    pub(crate) fn word(&mut self, out: &mut String, max: u64) {
        let start = out.len();
        let len = 3 + self.below(max.saturating_sub(3).max(1));
        for _ in 0..len {
            let r = self.next();
            if r.is_multiple_of(13) {
                out.push(' ');
            } else {
                out.push((b'a' + (r / 13 % 26) as u8) as char);
            }
        }
        while out.len() > start && out.ends_with(' ') {
            out.pop();
        }
        let lead = out[start..].len() - out[start..].trim_start().len();
        out.replace_range(start..start + lead, "");
    }

    /// `len` lowercase letters appended to `out`, 13 from each draw.
    fn letters(&mut self, out: &mut String, len: usize) {
        let mut left = len;
        while left > 0 {
            let mut r = self.next();
            for _ in 0..left.min(13) {
                out.push((b'a' + (r % 26) as u8) as char);
                r /= 26;
            }
            left = left.saturating_sub(13);
        }
    }

    /// The padding that brings an event of `size` bytes to about `average`:
    /// within 20 % either side of the difference, none if it is already as
    /// large.
    pub(crate) fn padding(&mut self, out: &mut String, size: usize, average: usize) {
        if size >= average {
            return;
        }
        let want = average - size;
        let delta = (want * 2 + 5) / 10;
        let len = want - delta
            + if delta == 0 {
                0
            } else {
                self.below(2 * delta as u64) as usize
            };
        self.letters(out, len);
    }
}

/// A bid's URL: three path words drawn from `key` alone (so a channel
/// always has the same URL), and the channel's number for the non-hot ones.
pub(crate) fn url(out: &mut String, key: u64, channel: Option<u64>) {
    let mut d = Draw::new(0x6e65_786d_6172_6b00, key);
    out.push_str("https://www.nexmark.com/");
    for _ in 0..3 {
        d.letters(out, 5);
        out.push('/');
    }
    out.push_str("item.htm?query=1");
    if let Some(c) = channel {
        let _ = write!(out, "&channel_id={c}");
    }
}

/// 1/i! for i in 0..=24.
const INVERSE_FACTORIALS: [f64; 25] = {
    let mut out = [1.0; 25];
    let mut i = 1;
    while i < 25 {
        out[i] = out[i - 1] / i as f64;
        i += 1;
    }
    out
};

/// 10^x for x in [0, 6]: a power of ten times e^(f·ln 10) for the fraction
/// f, by its Taylor series to the 24th power (Horner's rule; the terms left
/// out are below 1e-16 of the sum).
fn pow10(x: f64) -> f64 {
    const POWERS: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
    let whole = (x as usize).min(6);
    let y = (x - whole as f64) * std::f64::consts::LN_10;
    let mut sum = INVERSE_FACTORIALS[24];
    for c in INVERSE_FACTORIALS[..24].iter().rev() {
        sum = sum * y + c;
    }
    POWERS[whole] * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_ten_are_close_to_the_library_s() {
        for i in 0..=600 {
            let x = i as f64 / 100.0;
            let (ours, lib) = (pow10(x), 10f64.powf(x));
            assert!(
                ((ours - lib) / lib).abs() < 1e-14,
                "10^{x}: {ours} vs {lib}"
            );
        }
    }

    #[test]
    fn draws_depend_on_the_seed_and_the_id_only() {
        let take = |seed, id| {
            let mut d = Draw::new(seed, id);
            (0..8).map(|_| d.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(take(1, 7), take(1, 7));
        assert_ne!(take(1, 7), take(1, 8));
        assert_ne!(take(1, 7), take(2, 7));
        let mut w = String::new();
        let mut d = Draw::new(0, 3);
        for _ in 0..200 {
            w.clear();
            d.word(&mut w, 20);
            assert!(w.len() <= 19 && w == w.trim(), "{w:?}");
        }
    }
}
