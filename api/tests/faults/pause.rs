//! A process frozen with SIGSTOP for as long as the guard lives (SIGCONT on drop, also when the
//! scenario panics). A frozen server keeps its sockets open but answers nothing: requests to it
//! hang rather than fail, which is how a wedged dependency looks to its clients.

use std::process::Command;

pub struct Paused {
    what: &'static str,
    pid: u32,
}

impl Paused {
    pub fn new(what: &'static str, pid: u32) -> Self {
        signal(what, pid, "-STOP");
        Self { what, pid }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.what, self.pid, "-CONT");
    }
}

fn signal(what: &str, pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    // Not an assert in Drop: a second panic while unwinding would abort the test binary.
    if !status.success() {
        eprintln!("kill {signal} {pid} ({what}) failed: {status}");
    }
}
