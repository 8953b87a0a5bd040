//! hostlet: a daemonless node agent for Kubernetes static pods.
//!
//! Data flows one way: `source` → `manager` → `worker` → (`image`, `bundle`, `runtime`).
//! See ARCHITECTURE.md in the shared docs for the picture; each module's doc says what it owns.

pub mod api;
pub mod bundle;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod heap;
pub mod image;
pub mod logs;
pub mod manager;
pub mod manifest;
pub mod metrics;
pub mod network;
pub mod node;
pub mod probe;
pub mod runtime;
pub mod sandbox;
pub mod source;
pub mod state;
pub mod status;
pub mod tls;
pub mod worker;
