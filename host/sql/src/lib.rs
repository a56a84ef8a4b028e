//! Weir's query scripts (`.wsql`): SCOPE-like statements over streams of
//! events with lifetimes.
//!
//! ```text
//! Process = INPUT "process.jsonl" SCHEMA (ProcessID long, UserID string, ts long)
//!           EVENTTIME ts LIFETIME 1h;
//! Alert   = INPUT "alert.jsonl" SCHEMA (Name string, ProcessID long, ts long) EVENTTIME ts;
//! AlertWithUserID =
//!     SELECT Alert.Name AS Name, Process.UserID AS UserID
//!     FROM Process INNER JOIN Alert ON Process.ProcessID == Alert.ProcessID;
//! CountAlerts = SELECT UserID, COUNT(*) AS AlertCount FROM AlertWithUserID
//!     WITH HOPPING(5s, 5s);
//! OUTPUT CountAlerts TO "counts.jsonl" WITH INTERVAL;
//! ```
//!
//! [`parse`] turns a script into [`Statement`]s, each with where it is;
//! every error names the file, line and column and what was expected.

mod bind;
mod component;
mod duration;
mod error;
mod explain;
mod lower;
mod pipeline;
mod script;

pub use bind::{Bound, bind};
pub use component::{Component, Components, Declared, NoComponents, Process, World};
pub use duration::parse_duration;
pub use error::ScriptError;
pub use explain::explain;
pub use lower::{Inputs, compile, compile_with};
pub use pipeline::{Pipeline, Step};
pub use script::{Input, Output, Select, Statement, Window, parse, rewrite};
