//! A keyed, stateful reducer for click-fraud detection: per user, counts clicks in
//! tumbling event-time windows and flags a user the first time a window exceeds
//! `max_clicks`. State (owned by the host) survives batches, restarts and patches.

use serde::{Deserialize, Serialize};
use weir_sdk::{Key, Params, Row};

/// The columns this reducer reads.
#[derive(Row, Clone, Debug)]
pub struct Click {
    pub user: String,
    pub ts: i64,
    pub ad: String,
}

/// A flagged user.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Flag {
    pub user: String,
    pub window_start: i64,
    pub clicks_in_window: i64,
    pub total_clicks: i64,
    pub distinct_ads: i64,
}

/// Per-user statistics.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Stats {
    total: i64,
    window: i64,
    in_window: i64,
    flagged: bool,
    ads: Vec<String>,
}

fn window_us() -> i64 {
    weir_sdk::params()
        .int("window_us")
        .unwrap_or(60_000_000)
        .max(1)
}

/// Updates the user's statistics with one click; emits a flag when the window's
/// count first exceeds `max_clicks` (default 5).
pub fn user_stats(_user: &Key<'_>, c: Click, s: &mut Stats) -> Option<Flag> {
    let max_clicks = weir_sdk::params().int("max_clicks").unwrap_or(5);
    let window = c.ts.div_euclid(window_us());
    if window != s.window || s.total == 0 {
        s.window = window;
        s.in_window = 0;
        s.flagged = false;
        s.ads.clear();
    }
    s.total += 1;
    s.in_window += 1;
    if !s.ads.contains(&c.ad) {
        s.ads.push(c.ad);
    }
    if s.in_window > max_clicks && !s.flagged {
        s.flagged = true;
        return Some(Flag {
            user: c.user,
            window_start: window * window_us(),
            clicks_in_window: s.in_window,
            total_clicks: s.total,
            distinct_ads: s.ads.len() as i64,
        });
    }
    None
}

/// Refuses a non-positive threshold.
pub fn check(p: &Params) -> Result<(), String> {
    match p.int("max_clicks") {
        Some(n) if n < 1 => Err(format!("max_clicks must be at least 1, got {n}")),
        _ => Ok(()),
    }
}

weir_sdk::export_reducer!(user_stats, init = check);

#[cfg(test)]
mod tests {
    use super::*;

    fn click(user: &str, ts: i64) -> Click {
        Click {
            user: user.into(),
            ts,
            ad: "a1".into(),
        }
    }

    #[test]
    fn flags_once_per_window_across_batches() {
        let mut h = weir_sdk::testing::Harness::new()
            .param("max_clicks", 2i64)
            .param("window_us", 100i64);
        let first = h
            .reduce(
                "user",
                user_stats,
                vec![click("u1", 1), click("u2", 2), click("u1", 3)],
            )
            .unwrap();
        assert!(first.is_empty());
        let second = h
            .reduce(
                "user",
                user_stats,
                vec![click("u1", 4), click("u1", 5), click("u1", 150)],
            )
            .unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].user, "u1");
        assert_eq!(second[0].clicks_in_window, 3);
        assert_eq!(second[0].total_clicks, 3);
    }
}
