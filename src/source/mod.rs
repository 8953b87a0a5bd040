//! Manifest sources: they emit complete snapshots of the pods they see and decide nothing.

pub mod file;
mod list;

pub use list::MAX_MANIFEST_SIZE;

use crate::manifest::StaticPod;

/// Every valid pod one source currently declares, in sorted file order, duplicates removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub pods: Vec<StaticPod>,
}
