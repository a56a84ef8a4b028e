//! # weir-sdk: user-defined functions for Weir
//!
//! A Weir UDF is a plain Rust function over typed rows, compiled to a
//! WebAssembly component that the Weir host runs deterministically in a sandbox.
//! You never see the columnar buffers that cross the boundary: the SDK decodes a
//! whole batch into your rows, calls your function once per row inside the
//! component, and encodes the results back — one boundary crossing per batch.
//!
//! ## From nothing to a running UDF
//!
//! ```text
//! $ weir udf new to_eur            # a ready crate from the template
//! $ cd to_eur && cargo test        # native tests through weir_sdk::testing
//! $ weir udf build                 # -> target/wasm32-wasip2/release/to_eur.wasm
//! $ weir udf inspect target/wasm32-wasip2/release/to_eur.wasm
//! $ weir run job.toml              # a job whose stage names that .wasm file
//! ```
//!
//! The crate `weir udf new` makes looks like this:
//!
//! ```
//! use weir_sdk::Row;
//!
//! /// The columns this UDF reads; other columns of the stream never cross.
//! #[derive(Row)]
//! pub struct Bid { pub auction: i64, pub price: i64, pub channel: String }
//!
//! /// The columns it writes.
//! #[derive(Row, Debug, PartialEq)]
//! pub struct BidEur { pub auction: i64, pub eur: f64 }
//!
//! /// The logic: drop free bids, convert the rest.
//! pub fn to_eur(b: Bid) -> Option<BidEur> {
//!     let rate = weir_sdk::params().float("rate").unwrap_or(0.9);
//!     (b.price > 0).then(|| BidEur { auction: b.auction, eur: b.price as f64 * rate })
//! }
//!
//! // Makes this crate a `processor` component.
//! weir_sdk::export_flat_map!(to_eur);
//!
//! // `cargo test` runs it natively:
//! # fn main() {
//! let out = weir_sdk::testing::Harness::new()
//!     .param("rate", 0.5)
//!     .flat_map(to_eur, vec![
//!         Bid { auction: 1, price: 10, channel: "web".into() },
//!         Bid { auction: 2, price: 0, channel: "app".into() },
//!     ])
//!     .unwrap();
//! assert_eq!(out, vec![BidEur { auction: 1, eur: 5.0 }]);
//! # }
//! ```
//!
//! and the job file that runs it:
//!
//! ```toml
//! [[stages]]
//! name = "eur"
//! input = "bids"
//! kind = "processor"
//! component = "to_eur/target/wasm32-wasip2/release/to_eur.wasm"
//! params = { rate = 0.92 }
//! ```
//!
//! ## The kinds of UDF
//!
//! | macro | your function | world |
//! |---|---|---|
//! | [`export_filter!`] | `fn(I) -> bool`; surviving rows keep all their columns | `processor` |
//! | [`export_map!`] | `fn(I) -> O` | `processor` |
//! | [`export_flat_map!`] | `fn(I) -> impl IntoIterator<Item = O>` (`Option`, `Vec`, ...) | `processor` |
//! | [`export_reducer!`] | `fn(&Key, I, &mut S) -> impl IntoIterator<Item = O>` with `S: Serialize + Deserialize + Default` host-owned per key | `reducer` |
//! | `export_reducer!(f, on_time = g)` | `f: fn(&Key, I, &mut S, &mut Ctx)`, `g: fn(&Key, Timer, &mut S, &mut Ctx) -> impl IntoIterator<Item = Timed<O>>`: a reducer with event-time timers, emitting as CTIs pass ([`time`]) | `timed-reducer` |
//! | [`export_scalar!`] | `fn(A) -> R` where `R` is a [`Value`] | `scalar` |
//! | [`export_aggregate!`] | `add: fn(&mut S, A)`, `merge: fn(&mut S, S)`, `finish: fn(&S) -> R` over an accumulator `S: Serialize + Deserialize + Default` the host owns ([`aggregate`]) | `aggregate` |
//!
//! Each takes an optional `init = check` hook, `fn check(&Params) -> Result<(), String>`,
//! run once with the stage's parameters; an `Err` refuses the stage with your message.
//!
//! ## Rows that borrow: no allocation per row
//!
//! A `String` field copies each value out of the batch. A `&str` field borrows
//! it instead, so reading a row allocates nothing; inside a component this is
//! several times faster (see `docs/benchmarks.md`). Give the row a lifetime and
//! the function `'_`:
//!
//! ```
//! use weir_sdk::Row;
//!
//! #[derive(Row)]
//! pub struct Click<'a> { pub user: &'a str, pub url: &'a str, pub referrer: Option<&'a str> }
//!
//! #[derive(Row, Debug, PartialEq)]
//! pub struct Visit<'a> { pub user: &'a str, pub direct: bool }
//!
//! pub fn visits(c: Click<'_>) -> Option<Visit<'_>> {
//!     c.url.starts_with("/shop").then(|| Visit { user: c.user, direct: c.referrer.is_none() })
//! }
//! weir_sdk::export_flat_map!(visits);
//! # fn main() {
//! let out = weir_sdk::testing::Harness::new()
//!     .flat_map(visits, vec![
//!         Click { user: "ann", url: "/shop/1", referrer: None },
//!         Click { user: "bob", url: "/help", referrer: Some("ads") },
//!     ])
//!     .unwrap();
//! assert_eq!(out, vec![Visit { user: "ann", direct: true }]);
//! # }
//! ```
//!
//! ## Determinism
//!
//! Output must be a function of the input only. The host makes the usual
//! sources of nondeterminism harmless — clocks read event time, random numbers
//! come from a seed derived from the stage and position, the environment is
//! empty — but keep state in the reducer's `S`, not in statics: the host may
//! re-instantiate a component at any time (after a trap, on restart).

#![warn(missing_docs)]

pub mod aggregate;
pub mod log;
pub mod params;
pub mod pool;
mod row;
pub mod run;
pub mod state;
pub mod testing;
pub mod time;
mod value;

/// Bindings generated from the WIT contract (`weir:udf@0.2.0`), shared by every world.
#[allow(missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weir:udf/guest-api",
        runtime_path: "wit_bindgen::rt",
        additional_derives: [PartialEq],
        generate_all,
    });
}

pub use params::{Params, params};
pub use row::{ReadRow, Row, decode_rows, encode_rows};
pub use state::{Key, StateStore};
pub use value::{
    NonNull, NullableBuilder, OutputBuilder, ReadValue, StrReader, StrSource, Value, field_of,
    type_name,
};
pub use weir_sdk_derive::Row;
pub use wit::weir::udf::keys::{Fired, KeyGroups};
pub use wit::weir::udf::types::{
    Batch, Column, ColumnType, Field, Output, OutputColumn, Param, ParamValue, TimedOutput,
    UdfError, Values, VarWidth,
};

impl UdfError {
    /// An error about the whole batch.
    ///
    /// ```
    /// let e = weir_sdk::UdfError::new("max_clicks must be positive");
    /// assert_eq!((e.message.as_str(), e.row), ("max_clicks must be positive", None));
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        UdfError {
            message: message.into(),
            row: None,
        }
    }
}

/// The component's allocator (see [`pool`]).
#[cfg(all(
    feature = "pool-allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: pool::Pool = pool::Pool::new();

#[doc(hidden)]
pub mod __private {
    pub use weir_sdk_derive::__world_bindings;
    pub use wit_bindgen;
}

#[doc(hidden)]
#[macro_export]
macro_rules! __hook {
    () => {
        None
    };
    ($init:ident) => {
        Some(super::$init as $crate::run::InitHook)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_processor {
    ($f:ident, $init_fn:ident, $run_fn:ident $(, $init:ident)?) => {
        // Not while rustdoc collects doctests: the bindings' own doc examples
        // would run as doctests of the UDF's crate.
        #[cfg(not(doctest))]
        #[doc(hidden)]
        #[allow(missing_docs, clippy::all)]
        mod __weir_udf_export {
            $crate::__private::__world_bindings!("processor");
            struct Udf;
            impl Guest for Udf {
                fn init(
                    config: ::std::vec::Vec<$crate::Param>,
                ) -> ::std::result::Result<$crate::wit::weir::udf::types::Signature, $crate::UdfError> {
                    $crate::run::$init_fn(&super::$f, config, $crate::__hook!($($init)?))
                }
                fn process(
                    input: $crate::Batch,
                ) -> ::std::result::Result<$crate::Output, $crate::UdfError> {
                    $crate::run::$run_fn(super::$f, &input)
                }
            }
            export!(Udf);
        }
    };
}

/// Exports `f: fn(I) -> bool` as a filter: rows for which `f` is true pass on
/// with all their columns. `export_filter!(f, init = check)` adds an init hook.
///
/// ```
/// use weir_sdk::Row;
/// #[derive(Row)]
/// pub struct Click<'a> { pub agent: &'a str }
/// pub fn human(c: Click<'_>) -> bool { !c.agent.contains("bot") }
/// weir_sdk::export_filter!(human);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_filter {
    ($f:ident $(, init = $init:ident)?) => {
        $crate::__export_processor!($f, init_filter, filter $(, $init)?);
    };
}

/// Exports `f: fn(I) -> O` as a map: one output row per input row.
///
/// ```
/// use weir_sdk::Row;
/// #[derive(Row)]
/// pub struct Bid { pub price: f64 }
/// #[derive(Row)]
/// pub struct Eur { pub eur: f64 }
/// pub fn to_eur(b: Bid) -> Eur { Eur { eur: b.price * 0.92 } }
/// pub fn check(p: &weir_sdk::Params) -> Result<(), String> {
///     if p.float("rate").is_some_and(|r| r <= 0.0) { Err("rate must be positive".into()) } else { Ok(()) }
/// }
/// weir_sdk::export_map!(to_eur, init = check);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_map {
    ($f:ident $(, init = $init:ident)?) => {
        $crate::__export_processor!($f, init_map, map $(, $init)?);
    };
}

/// Exports `f: fn(I) -> impl IntoIterator<Item = O>` as a flat-map (0..n rows per
/// input row; returning `Option<O>` makes a filtering map).
///
/// ```
/// use weir_sdk::Row;
/// #[derive(Row)]
/// pub struct Line<'a> { pub text: &'a str }
/// #[derive(Row)]
/// pub struct Word<'a> { pub word: &'a str }
/// pub fn words(l: Line<'_>) -> impl Iterator<Item = Word<'_>> {
///     l.text.split_whitespace().map(|word| Word { word })
/// }
/// weir_sdk::export_flat_map!(words);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_flat_map {
    ($f:ident $(, init = $init:ident)?) => {
        $crate::__export_processor!($f, init_flat_map, flat_map $(, $init)?);
    };
}

/// Exports `f: fn(&Key, I, &mut S) -> impl IntoIterator<Item = O>` as a keyed
/// reducer. `S` is this key's state, owned and persisted by the host.
///
/// ```
/// use weir_sdk::{Key, Row};
/// #[derive(Row)]
/// pub struct Sale { pub shop: String, pub amount: i64 }
/// #[derive(Row)]
/// pub struct Total { pub shop: String, pub total: i64 }
/// pub fn running_total(_: &Key<'_>, s: Sale, total: &mut i64) -> Option<Total> {
///     *total += s.amount;
///     Some(Total { shop: s.shop, total: *total })
/// }
/// weir_sdk::export_reducer!(running_total);
/// # fn main() {}
/// ```
///
/// `export_reducer!(f, init = check, migrate = upgrade)` also exports a
/// state migration (world `migrating-reducer`):
/// `upgrade: fn(&Key, Old) -> Result<S, String>` converts each key's state, as
/// the version before left it (`Old`), when this version takes over a running
/// stage. An error, or state that does not decode as `Old`, refuses the
/// switch: the running version stays, with its state.
///
/// `export_reducer!(f, on_time = g)` makes a timed reducer (world
/// `timed-reducer`, or `timed-migrating-reducer` with `migrate`): `f` is
/// `fn(&Key, I, &mut S, &mut Ctx) -> impl IntoIterator<Item = O>`, where the
/// [`time::Ctx`] gives the row's interval and sets the key's timers, and
/// `g: fn(&Key, Timer, &mut S, &mut Ctx) -> impl IntoIterator<Item = Timed<O>>`
/// runs when a timer fires, emitting rows with the intervals it gives them
/// (see [`time`]). `init = check` and `migrate = upgrade` may follow.
#[macro_export]
macro_rules! export_reducer {
    ($f:ident, on_time = $on_time:ident $(, init = $init:ident)?, migrate = $migrate:ident) => {
        $crate::__export_reducer!("timed-migrating-reducer", init_timed_reduce, reduce_timed, $f, [$($init)?], {
            $crate::__migrate!($migrate);
            $crate::__on_cti!($on_time);
        });
    };
    ($f:ident, on_time = $on_time:ident $(, init = $init:ident)?) => {
        $crate::__export_reducer!("timed-reducer", init_timed_reduce, reduce_timed, $f, [$($init)?], {
            $crate::__on_cti!($on_time);
        });
    };
    ($f:ident, $(init = $init:ident,)? migrate = $migrate:ident) => {
        $crate::__export_reducer!("migrating-reducer", init_reduce, reduce, $f, [$($init)?], {
            $crate::__migrate!($migrate);
        });
    };
    ($f:ident $(, init = $init:ident)?) => {
        $crate::__export_reducer!("reducer", init_reduce, reduce, $f, [$($init)?], {});
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __migrate {
    ($migrate:ident) => {
        fn migrate(
            _from: ::std::string::String,
            keys: $crate::KeyGroups,
        ) -> ::std::result::Result<(), $crate::UdfError> {
            $crate::run::migrate(super::$migrate, &keys, &mut $crate::state::HostState)
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __on_cti {
    ($on_time:ident) => {
        fn on_cti(
            cti: i64,
            fired: $crate::Fired,
        ) -> ::std::result::Result<$crate::TimedOutput, $crate::UdfError> {
            $crate::run::on_cti(super::$on_time, cti, &fired, &mut $crate::state::HostState)
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_reducer {
    ($world:literal, $init_fn:ident, $run_fn:ident, $f:ident, [$($init:ident)?], { $($extra:tt)* }) => {
        // Not while rustdoc collects doctests: the bindings' own doc examples
        // would run as doctests of the UDF's crate.
        #[cfg(not(doctest))]
        #[doc(hidden)]
        #[allow(missing_docs, clippy::all)]
        mod __weir_udf_export {
            $crate::__private::__world_bindings!($world);
            struct Udf;
            impl Guest for Udf {
                fn init(
                    config: ::std::vec::Vec<$crate::Param>,
                ) -> ::std::result::Result<$crate::wit::weir::udf::types::Signature, $crate::UdfError> {
                    $crate::run::$init_fn(&super::$f, config, $crate::__hook!($($init)?))
                }
                fn reduce(
                    input: $crate::Batch,
                    keys: $crate::KeyGroups,
                ) -> ::std::result::Result<$crate::Output, $crate::UdfError> {
                    $crate::run::$run_fn(super::$f, &input, &keys, &mut $crate::state::HostState)
                }
                $($extra)*
            }
            export!(Udf);
        }
    };
}

/// Exports `f: fn(A) -> R` as a scalar function for query expressions.
///
/// ```
/// use weir_sdk::Row;
/// #[derive(Row)]
/// pub struct Args { pub price: f64, pub qty: i64 }
/// pub fn revenue(a: Args) -> f64 { a.price * a.qty as f64 }
/// weir_sdk::export_scalar!(revenue);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_scalar {
    ($f:ident $(, init = $init:ident)?) => {
        // Not while rustdoc collects doctests: the bindings' own doc examples
        // would run as doctests of the UDF's crate.
        #[cfg(not(doctest))]
        #[doc(hidden)]
        #[allow(missing_docs, clippy::all)]
        mod __weir_udf_export {
            $crate::__private::__world_bindings!("scalar");
            struct Udf;
            impl Guest for Udf {
                fn init(
                    config: ::std::vec::Vec<$crate::Param>,
                ) -> ::std::result::Result<$crate::wit::weir::udf::types::ScalarSignature, $crate::UdfError> {
                    $crate::run::init_scalar(&super::$f, config, $crate::__hook!($($init)?))
                }
                fn evaluate(
                    args: $crate::Batch,
                ) -> ::std::result::Result<$crate::Column, $crate::UdfError> {
                    $crate::run::scalar(super::$f, &args)
                }
            }
            export!(Udf);
        }
    };
}

/// Exports a user-defined aggregate, called in queries like `SUM`: `add`
/// adds a row of arguments to an accumulator, `merge` adds another
/// accumulator of the same group, `finish` gives the result. The host owns
/// the accumulators (see [`aggregate`]).
///
/// ```
/// use weir_sdk::Row;
/// #[derive(Row)]
/// pub struct Price { pub price: f64 }
/// #[derive(serde::Serialize, serde::Deserialize, Default)]
/// pub struct Mean { sum: f64, n: u64 }
/// pub fn add(m: &mut Mean, p: Price) { m.sum += p.price; m.n += 1; }
/// pub fn merge(m: &mut Mean, other: Mean) { m.sum += other.sum; m.n += other.n; }
/// pub fn finish(m: &Mean) -> Option<f64> { (m.n > 0).then(|| m.sum / m.n as f64) }
/// weir_sdk::export_aggregate!(add = add, merge = merge, finish = finish);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_aggregate {
    (add = $add:ident, merge = $merge:ident, finish = $finish:ident $(, init = $init:ident)?) => {
        // Not while rustdoc collects doctests: the bindings' own doc examples
        // would run as doctests of the UDF's crate.
        #[cfg(not(doctest))]
        #[doc(hidden)]
        #[allow(missing_docs, clippy::all)]
        mod __weir_udf_export {
            $crate::__private::__world_bindings!("aggregate");
            struct Udf;
            impl Guest for Udf {
                fn init(
                    config: ::std::vec::Vec<$crate::Param>,
                ) -> ::std::result::Result<$crate::wit::weir::udf::types::ScalarSignature, $crate::UdfError> {
                    $crate::aggregate::init(&super::$add, &super::$finish, config, $crate::__hook!($($init)?))
                }
                fn accumulate(
                    accumulators: ::std::vec::Vec<::std::vec::Vec<u8>>,
                    args: $crate::Batch,
                    groups: ::std::vec::Vec<u32>,
                ) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, $crate::UdfError> {
                    $crate::aggregate::accumulate(super::$add, accumulators, &args, &groups)
                }
                fn merge(
                    into: ::std::vec::Vec<::std::vec::Vec<u8>>,
                    from: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, $crate::UdfError> {
                    $crate::aggregate::merge(super::$merge, into, from)
                }
                fn finish(
                    accumulators: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<$crate::Column, $crate::UdfError> {
                    $crate::aggregate::finish(super::$finish, accumulators)
                }
            }
            export!(Udf);
        }
    };
}
