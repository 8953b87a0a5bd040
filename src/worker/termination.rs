//! Termination messages, the kubelet's way (kuberuntime `makeMounts` and
//! `getTerminationMessage`): each container with a `terminationMessagePath` gets a host
//! file, mode 0666 so any user of the container can write it, bind-mounted read-write at
//! that path; when the container exits, its first 4096 bytes become the terminated
//! state's `message`. With `FallbackToLogsOnError`, an empty file and a non-zero exit,
//! the message is the last 80 lines (at most 2048 bytes) of the container's log.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

use crate::runtime::ExitRecord;
use crate::sandbox::PodFiles;

/// The kubelet's `MaxContainerTerminationMessageLength`.
const MAX_MESSAGE: u64 = 4096;
/// The kubelet's `MaxContainerTerminationMessageLogLines` and `…LogLength`.
const LOG_LINES: usize = 80;
const LOG_BYTES: usize = 2048;

fn wanted(c: &Container) -> bool {
    c.termination_message_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
}

/// Makes the container's message file empty before an instance starts (a restart must
/// not report its predecessor's message).
pub(super) fn prepare(pod_dir: &Path, c: &Container) -> std::io::Result<()> {
    if !wanted(c) {
        return Ok(());
    }
    let path = PodFiles::new(pod_dir).termination_log(&c.name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    // Not left to the umask: a non-root container user must be able to write it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
}

/// The message of an instance that exited with `exit`; `log` is its CRI log file.
pub(super) fn message(
    pod_dir: &Path,
    c: &Container,
    exit: &ExitRecord,
    log: &Path,
) -> Option<String> {
    if !wanted(c) || exit.start_error.is_some() {
        return None;
    }
    let path: PathBuf = PodFiles::new(pod_dir).termination_log(&c.name);
    let mut text = String::new();
    if let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        let mut buf = Vec::new();
        if f.take(MAX_MESSAGE).read_to_end(&mut buf).is_ok() {
            text = String::from_utf8_lossy(&buf).into_owned();
        }
    }
    let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if text.is_empty() && fallback && exit.exit_code != 0 {
        text = crate::logs::tail_output(log, LOG_LINES, LOG_BYTES).unwrap_or_default();
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(policy: &str) -> Container {
        Container {
            name: "app".into(),
            termination_message_path: Some("/dev/termination-log".into()),
            termination_message_policy: Some(policy.into()),
            ..Default::default()
        }
    }

    fn exit(code: i32) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            signal: None,
            oom_killed: false,
            started_at: None,
            finished_at: String::new(),
            start_error: None,
            message: None,
        }
    }

    #[test]
    fn the_file_then_the_log_tail_on_failure_only() {
        let dir = std::env::temp_dir().join(format!("hostlet-term-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = dir.join("0.log");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&log, "2026-01-01T00:00:00Z stderr F it broke\n").unwrap();
        let c = container("FallbackToLogsOnError");
        prepare(&dir, &c).unwrap();
        let file = PodFiles::new(&dir).termination_log("app");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        assert_eq!(
            message(&dir, &c, &exit(1), &log).as_deref(),
            Some("it broke\n")
        );
        assert_eq!(message(&dir, &c, &exit(0), &log), None);
        assert_eq!(message(&dir, &container("File"), &exit(1), &log), None);
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        assert_eq!(message(&dir, &c, &exit(1), &log).unwrap().len(), 4096);
        prepare(&dir, &c).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 0);
        let none = Container {
            termination_message_path: Some(String::new()),
            ..container("File")
        };
        assert_eq!(message(&dir, &none, &exit(1), &log), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
