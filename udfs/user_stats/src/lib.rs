//! A keyed, timed reducer for click-fraud detection: per user, counts clicks
//! in tumbling event-time windows of `window_us` and, once a window has
//! closed (the input has passed a CTI at its end), flags the user if the
//! window held more than `max_clicks`. State and timers (owned by the host)
//! survive batches, restarts and patches.

use serde::{Deserialize, Serialize};
use weir_sdk::time::{Ctx, Timed, Timer};
use weir_sdk::{Key, Params, Row};

/// The columns this reducer reads.
#[derive(Row, Clone, Debug)]
pub struct Click {
    pub user: String,
    pub ad: String,
}

/// A flagged user: one row per window over the threshold, valid from the
/// window's end.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Flag {
    pub user: String,
    pub window_start: i64,
    pub clicks_in_window: i64,
    pub total_clicks: i64,
    pub distinct_ads: i64,
}

/// One open window of a user.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Window {
    start: i64,
    clicks: i64,
    ads: Vec<String>,
}

/// Per-user statistics: the clicks of windows already closed, and the
/// windows still open (more than one when clicks arrive out of order).
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Stats {
    closed_clicks: i64,
    open: Vec<Window>,
}

fn window_us() -> i64 {
    weir_sdk::params()
        .int("window_us")
        .unwrap_or(60_000_000)
        .max(1)
}

/// Counts one click in its window, opening the window (and setting a timer
/// at its end) on its first click.
pub fn user_stats(_user: &Key<'_>, c: Click, s: &mut Stats, ctx: &mut Ctx<'_>) -> Option<Flag> {
    let size = window_us();
    let start = ctx.start().div_euclid(size) * size;
    let window = match s.open.iter_mut().position(|w| w.start == start) {
        Some(i) => &mut s.open[i],
        None => {
            ctx.set_timer(start + size);
            s.open.push(Window {
                start,
                ..Window::default()
            });
            s.open.last_mut()?
        }
    };
    window.clicks += 1;
    if !window.ads.contains(&c.ad) {
        window.ads.push(c.ad);
    }
    None
}

/// Closes the window ending at the timer: flags the user when it held more
/// than `max_clicks` (default 5) clicks.
pub fn close_window(
    user: &Key<'_>,
    timer: Timer,
    s: &mut Stats,
    _ctx: &mut Ctx<'_>,
) -> Option<Timed<Flag>> {
    let max_clicks = weir_sdk::params().int("max_clicks").unwrap_or(5);
    let start = timer.at - window_us();
    let i = s.open.iter().position(|w| w.start == start)?;
    let window = s.open.remove(i);
    s.closed_clicks += window.clicks;
    (window.clicks > max_clicks).then(|| {
        Timed::point(
            timer.at,
            Flag {
                user: user.as_str().unwrap_or_default().to_string(),
                window_start: start,
                clicks_in_window: window.clicks,
                total_clicks: s.closed_clicks,
                distinct_ads: window.ads.len() as i64,
            },
        )
    })
}

/// Refuses a non-positive threshold.
pub fn check(p: &Params) -> Result<(), String> {
    match p.int("max_clicks") {
        Some(n) if n < 1 => Err(format!("max_clicks must be at least 1, got {n}")),
        _ => Ok(()),
    }
}

weir_sdk::export_reducer!(user_stats, on_time = close_window, init = check);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{Harness, Input};

    fn click(user: &str, ts: i64) -> Input<Click> {
        Input::row(
            ts,
            ts + 1,
            Click {
                user: user.into(),
                ad: format!("a{}", ts % 2),
            },
        )
    }

    /// A window is flagged once a CTI passes its end, not before, whatever
    /// the order its clicks came in; the flag is a point event at the
    /// window's end.
    #[test]
    fn flags_a_window_when_a_cti_closes_it() {
        let mut h = Harness::new()
            .param("max_clicks", 2i64)
            .param("window_us", 100i64);
        let out = h
            .timed_reduce(
                "user",
                user_stats,
                close_window,
                vec![
                    click("u1", 1),
                    click("u2", 2),
                    click("u1", 150),
                    click("u1", 3),
                    click("u1", 4),
                    Input::cti(90),
                ],
            )
            .unwrap();
        assert!(out.is_empty(), "no window has closed yet: {out:?}");
        let out = h
            .timed_reduce(
                "user",
                user_stats,
                close_window,
                vec![click("u1", 95), Input::cti(100), Input::end()],
            )
            .unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].start, out[0].end), (100, 101));
        assert_eq!(
            out[0].row,
            Flag {
                user: "u1".into(),
                window_start: 0,
                clicks_in_window: 4,
                total_clicks: 4,
                distinct_ads: 2,
            }
        );
    }

    /// End of input closes every open window.
    #[test]
    fn end_of_input_closes_the_last_windows() {
        let mut h = Harness::new()
            .param("max_clicks", 1i64)
            .param("window_us", 100i64);
        let out = h
            .timed_reduce(
                "user",
                user_stats,
                close_window,
                vec![click("u2", 7), click("u2", 8), Input::end()],
            )
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].row.user, "u2");
        assert_eq!(out[0].start, 100);
    }
}
