//! How Weir's processes talk: QUIC with mutual TLS (quinn, rustls) under
//! certificates of the cluster's CA (rcgen), the framed request protocol
//! ([`protocol`]), what a certificate's role may ask ([`access`]), and the
//! reports a node sends about its jobs ([`status`]).

use weir_core::schema;

pub mod access;
pub mod cluster;
pub mod error;
pub mod frames;
pub mod protocol;
pub mod status;

pub use error::NetError;
