//! Graceful node shutdown under systemd, as the kubelet's nodeshutdown manager does it
//! (pkg/kubelet/nodeshutdown/systemd): a *delay* inhibitor lock from logind
//! (`org.freedesktop.login1.Manager.Inhibit("shutdown", ..., "delay")`, whose reply is a
//! file descriptor: the lock lasts while it is open), logind's `InhibitDelayMaxSec`
//! raised to the grace period when it is lower (a drop-in and a reload), and the
//! `PrepareForShutdown(true)` signal, on which the manager stops the pods and this
//! module then closes the descriptor so the shutdown goes on.
//!
//! Why a small D-Bus client of our own (`dbus.rs`): the lock is a file descriptor passed
//! with SCM_RIGHTS in a method reply, which `busctl` (used elsewhere for systemd calls)
//! cannot hold. `systemd-inhibit CMD` could hold it for a child, but the signal would
//! then need a second child (`busctl monitor`, `dbus-monitor`) whose text output is
//! parsed and whose buffering is not ours; zbus would bring an async runtime adapter and
//! a few dozen crates for three calls and one signal. The client here is EXTERNAL auth,
//! unix-fd negotiation, method calls and signal reads over the bus socket: what this
//! needs and nothing more, on one blocking thread.

pub mod dbus;
pub mod logind;
