//! hostlet: a daemonless node agent for Kubernetes static pods.
//!
//! Data flows one way: `source` → `manager` → `worker` → (`image`, `bundle`, `runtime`).
//! ARCHITECTURE.md in the repository root has the picture, the layer order every import
//! follows (checked by `tests/layering.rs`) and one line per module; each module's doc
//! says what it owns.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod backoff;
pub mod bundle;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod heap;
pub mod image;
pub mod lock_fd;
pub mod logs;
pub mod manager;
pub mod manifest;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pressure;
pub mod probe;
pub mod runtime;
pub mod sandbox;
pub mod shutdown;
pub mod source;
pub mod state;
pub mod status;
pub mod tasks;
pub mod tls;
pub mod update;
pub mod userns;
pub mod worker;
