//! Stage parameters from the job file (`[stages.params]`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::wit::weir::udf::types::{Param, ParamValue};

/// The parameters a stage was started with.
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

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            ParamValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// A number parameter (an integer in the job file is accepted too).
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.value(name)? {
            ParamValue::Float(v) => Some(*v),
            ParamValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// A string parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.value(name)? {
            ParamValue::Text(v) => Some(v),
            _ => None,
        }
    }

    /// A boolean parameter.
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.value(name)? {
            ParamValue::Flag(v) => Some(*v),
            _ => None,
        }
    }

    /// Adds or replaces a parameter (used by the test harness).
    pub fn set(&mut self, name: &str, value: ParamValue) {
        self.entries.retain(|p| p.name != name);
        self.entries.push(Param {
            name: name.to_string(),
            value,
        });
    }

    /// All parameters as passed to `init`.
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
