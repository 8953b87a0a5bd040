//! Pod workers: one task per pod UID. A worker takes its pod through named states
//! (`states`) by the kubelet's rules (`rules`), on services behind small traits
//! (`services`):
//!
//! - `driver`: a pod's life, from waiting for its predecessor to removing what it had;
//! - `pod`: the order of its containers (init, sidecars, apps);
//! - `supervisor`: one container's restarts; `instance`: one running instance (probes,
//!   hooks, termination); `container`: starting an instance (image, bundle, runtime);
//!   `termination`: the termination message file and its reading after an exit;
//! - `host_resources`, `volumes`, `projection`, `eviction`: what the pod has on the host
//!   (`projection`: configMap, secret and projected volumes, kept up to date);
//! - `log_drops`, `log_gc`, `cgroup_gc`: agent-wide watchers of container log drops, and
//!   of log directories and pod cgroups left by pods that no longer exist.
//!
//! This file only names the modules; they import each other, never this file.

pub mod backoff;
pub mod cgroup_gc;
mod container;
mod deps;
mod driver;
mod error;
pub mod eviction;
mod host_resources;
mod idmapped;
pub mod image_volumes;
mod instance;
pub mod log_drops;
pub mod log_gc;
mod pod;
pub mod projection;
mod pull_secrets;
pub mod resize;
mod resizer;
pub mod rules;
mod secret_env;
mod services;
pub mod states;
mod supervisor;
mod termination;
pub mod volumes;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod tests;

pub(crate) use container::container_id;
pub use container::BUNDLE_BUILDS;
pub use deps::{Deps, HandleOf, Kill, NodeKills, ObjectStore};
pub use driver::{run_pod, stop_orphan};
pub use resize::{decide as decide_resize, Decision as ResizeDecision};
pub use rules::RestartPolicy;
pub use services::{
    ContainerHandle, ContainerReport, ContainerRuntime, Images, PodReport, Real, Services,
    StatusSink,
};

#[cfg(test)]
mod future_sizes {
    //! The futures that live as long as a pod or a container are kept small: their larger
    //! phases (start, stop, hooks, eviction) are boxed and allocated only while they run.
    //! Inline, `supervise` was 8.9 KB in a debug build, so 100 pods kept ~1 MB for states
    //! they were not in (BENCHMARKS.md row 4a). A start's future is kept small too: 100
    //! pods written at once have 100 of them in flight, and the heap keeps that peak.

    fn ret4<A, B, C, D, R>(_: impl Fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    fn ret3<A, B, C, R>(_: impl Fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    fn ret5<A, B, C, D, E, R>(_: impl Fn(A, B, C, D, E) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    fn ret6<A, B, C, D, E, F, R>(_: impl Fn(A, B, C, D, E, F) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    use super::Real;

    #[test]
    fn long_lived_futures_stay_small() {
        let sizes = [
            ("run_pod", ret6(super::driver::run_pod::<Real>), 3072),
            (
                "run_containers",
                ret3(super::pod::run_containers::<Real>),
                3072,
            ),
            (
                "supervise",
                ret5(super::supervisor::supervise::<Real>),
                3072,
            ),
            (
                "run_instance",
                ret6(super::instance::run_instance::<Real>),
                3072,
            ),
            (
                "container::start",
                ret4(super::container::start::<Real>),
                1024,
            ),
        ];
        for (name, size, max) in sizes {
            assert!(
                size <= max,
                "{name}'s future is {size} bytes (at most {max}); box its large phases"
            );
        }
    }
}
