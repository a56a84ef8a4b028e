//! Time in a reducer: the interval of the row it reduces, per-key
//! event-time timers, and the rows it emits as time passes.
//!
//! A timed reducer (`export_reducer!(f, on_time = g)`) gets a [`Ctx`] with
//! every row: the row's interval, and the timers of the row's key. A timer
//! set at `t` fires once the stage's input has passed a CTI at or after `t`,
//! that is once every event starting before `t` has arrived; `g` is then
//! called with the key, its state and the [`Timer`], and the rows it returns
//! carry the intervals it gives them ([`Timed`]). End of input is a final
//! CTI at [`END`]: every timer still set fires then, and a timer set at
//! `END` fires only then.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use weir_sdk::time::{Ctx, Timed, Timer};
//! use weir_sdk::{Key, Row};
//!
//! #[derive(Row)]
//! pub struct Click { pub user: String }
//!
//! #[derive(Row, Debug, PartialEq)]
//! pub struct Count { pub user: String, pub window_start: i64, pub clicks: i64 }
//!
//! /// Clicks per user in tumbling 10-unit windows, each emitted once its
//! /// window has closed.
//! #[derive(Serialize, Deserialize, Default)]
//! pub struct Windows { open: Vec<(i64, i64)> }
//!
//! const SIZE: i64 = 10;
//!
//! pub fn count(_: &Key<'_>, _click: Click, w: &mut Windows, ctx: &mut Ctx<'_>) -> Option<Count> {
//!     let start = ctx.start().div_euclid(SIZE) * SIZE;
//!     match w.open.iter_mut().find(|(s, _)| *s == start) {
//!         Some((_, n)) => *n += 1,
//!         None => {
//!             w.open.push((start, 1));
//!             ctx.set_timer(start + SIZE);
//!         }
//!     }
//!     None
//! }
//!
//! pub fn close(key: &Key<'_>, timer: Timer, w: &mut Windows, ctx: &mut Ctx<'_>) -> Vec<Timed<Count>> {
//!     let start = timer.at - SIZE;
//!     let clicks = w.open.iter().find(|(s, _)| *s == start).map_or(0, |(_, n)| *n);
//!     w.open.retain(|(s, _)| *s != start);
//!     if w.open.is_empty() {
//!         ctx.clear_state();
//!     }
//!     let user = key.as_str().unwrap_or_default().to_string();
//!     vec![Timed::point(timer.at, Count { user, window_start: start, clicks })]
//! }
//!
//! weir_sdk::export_reducer!(count, on_time = close);
//!
//! # fn main() {
//! use weir_sdk::testing::{Harness, Input};
//! let click = |t: i64, user: &str| Input::row(t, t + 1, Click { user: user.into() });
//! let out = Harness::new()
//!     .timed_reduce("user", count, close, vec![
//!         click(1, "ann"), click(4, "bob"), click(7, "ann"),
//!         Input::cti(12),
//!         click(13, "ann"),
//!         Input::end(),
//!     ])
//!     .unwrap();
//! let counts: Vec<_> = out.iter().map(|t| (t.start, t.row.user.as_str(), t.row.clicks)).collect();
//! assert_eq!(counts, vec![(10, "ann", 2), (10, "bob", 1), (20, "ann", 1)]);
//! # }
//! ```

use crate::state::StateStore;

/// The CTI that ends the input: every timer still set fires at it.
///
/// ```
/// # use weir_sdk::time::{Ctx, END};
/// # let mut store = weir_sdk::testing::MemoryState::default();
/// # let mut ctx = Ctx::new(0, 5, 6, &mut store);
/// ctx.set_timer(END); // fires only at end of input
/// ```
pub const END: i64 = i64::MAX;

/// What a timed reducer may do besides reading and writing its key's
/// state: read the interval of the row it reduces, set and cancel the key's
/// timers, and drop the key's state.
///
/// ```
/// use weir_sdk::time::Ctx;
/// // A reducer's row function: a timer a minute (of event time) after each row.
/// fn f(_: &weir_sdk::Key<'_>, _row: (), _: &mut (), ctx: &mut Ctx<'_>) {
///     ctx.set_timer(ctx.start() + 60_000_000);
/// }
/// ```
pub struct Ctx<'s> {
    group: u32,
    start: i64,
    end: i64,
    store: &'s mut dyn StateStore,
    clear: bool,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<'s> Ctx<'s> {
    /// The context of key group `group` for a row valid over `[start, end)`
    /// (in `on_time`, the timer's point `[at, at + 1)`).
    ///
    /// ```
    /// # let mut store = weir_sdk::testing::MemoryState::default();
    /// let ctx = weir_sdk::time::Ctx::new(0, 5, 9, &mut store);
    /// assert_eq!(ctx.start(), 5);
    /// ```
    pub fn new(group: u32, start: i64, end: i64, store: &'s mut dyn StateStore) -> Self {
        Ctx {
            group,
            start,
            end,
            store,
            clear: false,
        }
    }

    /// When the row starts (event time, microseconds unless the job says
    /// otherwise); in `on_time`, the timer's time.
    ///
    /// ```
    /// # use weir_sdk::time::Ctx;
    /// # let mut store = weir_sdk::testing::MemoryState::default();
    /// let ctx = Ctx::new(0, 5, 9, &mut store);
    /// assert_eq!((ctx.start(), ctx.end()), (5, 9));
    /// ```
    pub fn start(&self) -> i64 {
        self.start
    }

    /// When the row ends (exclusive).
    ///
    /// ```
    /// # use weir_sdk::time::Ctx;
    /// # let mut store = weir_sdk::testing::MemoryState::default();
    /// assert_eq!(Ctx::new(0, 5, 9, &mut store).end(), 9);
    /// ```
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Sets a timer for this key at `at`: `on_time` is called with it once
    /// the input passes a CTI at or after `at` (at the latest, at end of
    /// input). Setting the same time twice sets one timer.
    ///
    /// ```
    /// # use weir_sdk::time::Ctx;
    /// # let mut store = weir_sdk::testing::MemoryState::default();
    /// let mut ctx = Ctx::new(0, 5, 6, &mut store);
    /// ctx.set_timer(10);
    /// ```
    pub fn set_timer(&mut self, at: i64) {
        self.store.set_timer(self.group, at);
    }

    /// Cancels this key's timer at `at`, if it has one.
    ///
    /// ```
    /// # use weir_sdk::time::Ctx;
    /// # let mut store = weir_sdk::testing::MemoryState::default();
    /// let mut ctx = Ctx::new(0, 5, 6, &mut store);
    /// ctx.set_timer(10);
    /// ctx.cancel_timer(10);
    /// ```
    pub fn cancel_timer(&mut self, at: i64) {
        self.store.cancel_timer(self.group, at);
    }

    /// Drops this key's state once the call ends (its timers stay): the
    /// next row of the key starts from `S::default()`. Use it when a key's
    /// last window closes, so that state does not grow with every key ever
    /// seen.
    ///
    /// ```
    /// # use weir_sdk::time::Ctx;
    /// # let mut store = weir_sdk::testing::MemoryState::default();
    /// let mut ctx = Ctx::new(0, 5, 6, &mut store);
    /// ctx.clear_state();
    /// assert!(ctx.cleared());
    /// ```
    pub fn clear_state(&mut self) {
        self.clear = true;
    }

    /// Whether [`Ctx::clear_state`] was called.
    ///
    /// ```
    /// # use weir_sdk::time::Ctx;
    /// # let mut store = weir_sdk::testing::MemoryState::default();
    /// assert!(!Ctx::new(0, 5, 6, &mut store).cleared());
    /// ```
    pub fn cleared(&self) -> bool {
        self.clear
    }
}

/// A timer that fired.
///
/// ```
/// let t = weir_sdk::time::Timer { at: 100, cti: 120 };
/// assert!(t.at <= t.cti && !t.at_end());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// The time it was set at.
    pub at: i64,
    /// The CTI that fired it (at or after `at`; [`END`] at end of input).
    pub cti: i64,
}

impl Timer {
    /// Whether end of input fired it.
    ///
    /// ```
    /// use weir_sdk::time::{END, Timer};
    /// assert!(Timer { at: 10, cti: END }.at_end());
    /// assert!(!Timer { at: 10, cti: 12 }.at_end());
    /// ```
    pub fn at_end(&self) -> bool {
        self.cti == END
    }
}

/// A row a reducer emits as time passes, with its interval `[start, end)`.
/// It must start at or after the CTI the stage passed on before the one that
/// fired the timer: a window's result usually starts at the window's end.
///
/// ```
/// use weir_sdk::time::Timed;
/// assert_eq!(Timed::point(60, "result"), Timed::new(60, 61, "result"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Timed<O> {
    /// Start of the interval (inclusive).
    pub start: i64,
    /// End of the interval (exclusive), after `start`.
    pub end: i64,
    /// The row.
    pub row: O,
}

impl<O> Timed<O> {
    /// `row` valid over `[start, end)`.
    ///
    /// ```
    /// let t = weir_sdk::time::Timed::new(10, 20, "row");
    /// assert_eq!((t.start, t.end, t.row), (10, 20, "row"));
    /// ```
    pub fn new(start: i64, end: i64, row: O) -> Self {
        Timed { start, end, row }
    }

    /// `row` as a point event at `at`: valid over `[at, at + 1)`.
    ///
    /// ```
    /// let t = weir_sdk::time::Timed::point(10, "row");
    /// assert_eq!((t.start, t.end), (10, 11));
    /// ```
    pub fn point(at: i64, row: O) -> Self {
        Timed {
            start: at,
            end: at.saturating_add(1),
            row,
        }
    }
}
