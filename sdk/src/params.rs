//! Stage parameters from the job file (`[stages.params]`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::wit::weir::udf::types::{Param, ParamValue};

/// The parameters a stage was started with: `params = { ... }` of its
/// `[[stages]]` entry in the job file, read with [`params()`].
///
/// ```
/// // In the job file: params = { max_clicks = 8, rate = 0.92, region = "eu", strict = true }
/// let mut p = weir_sdk::Params::default();
/// p.set("max_clicks", 8i64.into());
/// assert_eq!(p.int("max_clicks"), Some(8));
/// assert_eq!(p.int("missing"), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Params {
    entries: Vec<Param>,
}

impl From<Vec<Param>> for Params {
    fn from(entries: Vec<Param>) -> Self {
        Params { entries }
    }
}

impl Params {
    fn value(&self, name: &str) -> Option<&ParamValue> {
        self.entries
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.value)
    }

    /// An integer parameter; `None` when it is missing or not an integer.
    ///
    /// ```
    /// # let mut p = weir_sdk::Params::default();
    /// # p.set("max_clicks", 8i64.into());
    /// # p.set("rate", 0.92.into());
    /// # p.set("region", "eu".into());
    /// # p.set("strict", true.into());
    /// assert_eq!(p.int("max_clicks"), Some(8));
    /// assert_eq!(p.int("region"), None);
    /// ```
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            ParamValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// A number parameter (an integer in the job file is accepted too).
    ///
    /// ```
    /// # let mut p = weir_sdk::Params::default();
    /// # p.set("max_clicks", 8i64.into());
    /// # p.set("rate", 0.92.into());
    /// # p.set("region", "eu".into());
    /// # p.set("strict", true.into());
    /// assert_eq!(p.float("rate"), Some(0.92));
    /// assert_eq!(p.float("max_clicks"), Some(8.0));
    /// ```
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.value(name)? {
            ParamValue::Float(v) => Some(*v),
            ParamValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// A string parameter.
    ///
    /// ```
    /// # let mut p = weir_sdk::Params::default();
    /// # p.set("max_clicks", 8i64.into());
    /// # p.set("rate", 0.92.into());
    /// # p.set("region", "eu".into());
    /// # p.set("strict", true.into());
    /// assert_eq!(p.text("region"), Some("eu"));
    /// ```
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.value(name)? {
            ParamValue::Text(v) => Some(v),
            _ => None,
        }
    }

    /// A boolean parameter.
    ///
    /// ```
    /// # let mut p = weir_sdk::Params::default();
    /// # p.set("max_clicks", 8i64.into());
    /// # p.set("rate", 0.92.into());
    /// # p.set("region", "eu".into());
    /// # p.set("strict", true.into());
    /// assert_eq!(p.flag("strict"), Some(true));
    /// ```
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.value(name)? {
            ParamValue::Flag(v) => Some(*v),
            _ => None,
        }
    }

    /// Adds or replaces a parameter (used by the test harness).
    ///
    /// ```
    /// # let mut p = weir_sdk::Params::default();
    /// # p.set("max_clicks", 8i64.into());
    /// # p.set("rate", 0.92.into());
    /// # p.set("region", "eu".into());
    /// # p.set("strict", true.into());
    /// p.set("max_clicks", 10i64.into());
    /// assert_eq!(p.int("max_clicks"), Some(10));
    /// ```
    pub fn set(&mut self, name: &str, value: ParamValue) {
        self.entries.retain(|p| p.name != name);
        self.entries.push(Param {
            name: name.to_string(),
            value,
        });
    }

    /// All parameters as passed to `init`.
    ///
    /// ```
    /// # let mut p = weir_sdk::Params::default();
    /// # p.set("max_clicks", 8i64.into());
    /// # p.set("rate", 0.92.into());
    /// # p.set("region", "eu".into());
    /// # p.set("strict", true.into());
    /// let names: Vec<&str> = p.entries().iter().map(|e| e.name.as_str()).collect();
    /// assert_eq!(names, ["max_clicks", "rate", "region", "strict"]);
    /// ```
    pub fn entries(&self) -> &[Param] {
        &self.entries
    }
}

thread_local! {
    // Shared, so that `params()` in a per-row function costs a reference count,
    // not a copy of every parameter.
    static CURRENT: RefCell<Rc<Params>> = RefCell::new(Rc::new(Params::default()));
}

pub(crate) fn install(params: Params) {
    CURRENT.with(|c| *c.borrow_mut() = Rc::new(params));
}

/// The parameters of the running stage (set by `init`). Cheap to call per row.
///
/// ```
/// use weir_sdk::Row;
///
/// #[derive(Row)]
/// pub struct Bid { pub price: f64 }
///
/// pub fn expensive(b: Bid) -> bool {
///     b.price > weir_sdk::params().float("min_price").unwrap_or(100.0)
/// }
///
/// # fn main() {
/// let kept = weir_sdk::testing::Harness::new()
///     .param("min_price", 50.0)
///     .filter(expensive, vec![Bid { price: 60.0 }, Bid { price: 10.0 }])
///     .unwrap();
/// assert_eq!(kept.len(), 1);
/// # }
/// ```
pub fn params() -> Rc<Params> {
    CURRENT.with(|c| c.borrow().clone())
}

impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::Int(v)
    }
}
impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Float(v)
    }
}
impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Text(v.to_string())
    }
}
impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Flag(v)
    }
}
