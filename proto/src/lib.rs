//! tollgate-proto: the wire contract between Tollgate's planes and its admin clients.
//!
//! Generated from `proto/tollgate/v1/*.proto`. Proto types stay at the edges: the data
//! plane's request path works with `tollgate-policy` types, never these.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Version 1 of the Tollgate protocol.
pub mod v1 {
    tonic::include_proto!("tollgate.v1");
}
