//! What can go wrong on a node, each with what and where.

use std::fmt::Display;

use weir_core::stage::StageError;
use weir_core::vertex::VertexError;
use weir_net::NetError;
use weir_store::rstream::StreamError;
use weir_store::store::StoreError;

use crate::job::JobError;
use crate::source::SourceError;

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A job that cannot be submitted, resumed or changed as asked.
    #[error("{0}")]
    Job(String),
    /// A deploy, rollback or filter change that was refused.
    #[error("{0}")]
    Patch(String),
    /// A source's or sink's file that cannot be read or written as the job needs.
    #[error("{0}")]
    File(String),
    /// A request the node refuses.
    #[error("{0}")]
    Request(String),
    /// A value that could not be encoded or decoded.
    #[error("{0}")]
    Encoding(String),
    /// A job file.
    #[error(transparent)]
    JobFile(#[from] JobError),
    /// Reading a source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A UDF stage could not be built.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// A runtime filter that does not fit the stage's input.
    #[error(transparent)]
    Filter(#[from] weir_core::filter::FilterError),
    /// A vertex failed.
    #[error(transparent)]
    Vertex(#[from] VertexError),
    /// An rStream operation failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network layer failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Membership or the coordinator failed.
    #[error(transparent)]
    Cluster(#[from] weir_cluster::ClusterError),
    /// The Wasm runtime could not start or load a component.
    #[error(transparent)]
    Wasm(#[from] weir_wasm::EngineError),
    /// A component could not be loaded.
    #[error(transparent)]
    Load(#[from] weir_wasm::LoadError),
    /// An operating-system call failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// What was being done when `cause` happened.
    #[error("{what}: {cause}")]
    Context {
        /// What was being done, and where.
        what: String,
        /// What went wrong.
        cause: Box<NodeError>,
    },
}

impl From<postcard::Error> for NodeError {
    fn from(e: postcard::Error) -> Self {
        NodeError::Encoding(e.to_string())
    }
}

impl From<serde_json::Error> for NodeError {
    fn from(e: serde_json::Error) -> Self {
        NodeError::Encoding(e.to_string())
    }
}

impl NodeError {
    /// An encoding error reported as text (as `Entry::encode` reports them).
    pub fn encoding(e: impl Display) -> Self {
        NodeError::Encoding(e.to_string())
    }
}

/// The node's results.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Says what was being done when an error happened.
pub trait Context<T> {
    /// The error, after `what`.
    fn context(self, what: impl Display) -> Result<T>;
    /// The error, after what `what` says.
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<NodeError>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| NodeError::Context {
            what: what.to_string(),
            cause: Box::new(e.into()),
        })
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| NodeError::Context {
            what: what().to_string(),
            cause: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| NodeError::Job(what.to_string()))
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| NodeError::Job(what().to_string()))
    }
}

/// Returns a [`NodeError`] of kind `$kind` with a formatted message.
macro_rules! bail {
    ($kind:ident, $($fmt:tt)*) => {
        return Err($crate::error::NodeError::$kind(format!($($fmt)*)))
    };
}

/// A [`NodeError`] of kind `$kind` with a formatted message.
macro_rules! err {
    ($kind:ident, $($fmt:tt)*) => {
        $crate::error::NodeError::$kind(format!($($fmt)*))
    };
}

pub(crate) use {bail, err};

macro_rules! from_transport {
    ($($ty:ty),+) => {
        $(impl From<$ty> for NodeError {
            fn from(e: $ty) -> Self {
                NodeError::Net(NetError::Transport(e.to_string()))
            }
        })+
    };
}

from_transport!(
    quinn::ReadToEndError,
    quinn::ReadExactError,
    quinn::WriteError,
    quinn::ConnectionError,
    quinn::ClosedStream
);

impl From<tokio::task::JoinError> for NodeError {
    fn from(e: tokio::task::JoinError) -> Self {
        NodeError::Request(format!("the request's task failed: {e}"))
    }
}
