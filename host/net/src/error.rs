//! What can go wrong in the network layer, each with what and where.

use std::fmt::Display;

/// Why a network-layer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Certificates or keys are missing, unreadable or unusable, or the TLS
    /// configuration they make cannot be built.
    #[error("{0}")]
    Certificate(String),
    /// Connecting to a node or exchanging messages with it failed: the
    /// request may or may not have taken effect.
    #[error("{0}")]
    Transport(String),
    /// The node answered the request with an error: it did not take effect.
    #[error("{0}")]
    Refused(String),
    /// An argument that cannot be used: a directory, a name, an address.
    #[error("{0}")]
    Invalid(String),
}

/// The network layer's results.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Says what was being done with certificates when an error happened.
pub trait Certificate<T> {
    /// The error as a [`NetError::Certificate`], after `what`.
    fn cert(self, what: impl FnOnce() -> String) -> Result<T>;
    /// The error as a [`NetError::Certificate`], after `what`.
    fn cert_msg(self, what: &str) -> Result<T>;
}

/// Says what was being done on the network when an error happened.
pub trait Transport<T> {
    /// The error as a [`NetError::Transport`], after `what`.
    fn net(self, what: impl FnOnce() -> String) -> Result<T>;
    /// The error as a [`NetError::Transport`], after `what`.
    fn net_msg(self, what: &str) -> Result<T>;
}

impl<T, E: Display> Certificate<T> for Result<T, E> {
    fn cert(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| NetError::Certificate(format!("{}: {e}", what())))
    }
    fn cert_msg(self, what: &str) -> Result<T> {
        self.map_err(|e| NetError::Certificate(format!("{what}: {e}")))
    }
}

impl<T, E: Display> Transport<T> for Result<T, E> {
    fn net(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| NetError::Transport(format!("{}: {e}", what())))
    }
    fn net_msg(self, what: &str) -> Result<T> {
        self.map_err(|e| NetError::Transport(format!("{what}: {e}")))
    }
}

macro_rules! from_as {
    ($variant:ident: $($ty:ty),+) => {
        $(impl From<$ty> for NetError {
            fn from(e: $ty) -> Self {
                NetError::$variant(e.to_string())
            }
        })+
    };
}

from_as!(Certificate: rcgen::Error, rustls::Error, quinn::crypto::rustls::NoInitialCipherSuite);
from_as!(
    Transport: std::io::Error,
    quinn::ConnectError,
    quinn::ConnectionError,
    quinn::WriteError,
    quinn::ReadExactError,
    quinn::ClosedStream,
    serde_json::Error
);
from_as!(Invalid: std::net::AddrParseError, quinn::VarIntBoundsExceeded);
