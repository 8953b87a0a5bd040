//! The operator's terminal, shared by `exec -it` and `attach -t`: raw mode while a
//! container's terminal is relayed, and its window size.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::termios;

/// Puts stdin's terminal in raw mode (when it is one) and restores it on every way out.
pub struct RawMode(Option<termios::Termios>);

impl RawMode {
    pub fn enter() -> Self {
        let stdin = std::io::stdin();
        Self(termios::tcgetattr(stdin.as_fd()).ok().inspect(|orig| {
            let mut raw = orig.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, t);
        }
    }
}

/// The size of this process's terminal (rows, columns), None when stdout is not one.
pub fn window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize the kernel knows the size of.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    ok.then_some((ws.ws_row, ws.ws_col))
}

/// Sets the window size of the terminal `fd` (a pty master).
pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize the kernel knows the size of.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Gives the terminal `master` this process's window size.
pub fn copy_window_size(master: &impl AsRawFd) {
    if let Some((rows, cols)) = window_size() {
        set_window_size(master.as_raw_fd(), rows, cols);
    }
}
