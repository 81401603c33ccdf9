//! The real worker binary as a child process: started with a namespace's environment, logs
//! (JSON) in a file, stopped with SIGTERM or SIGKILL.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::DEADLINE;

pub struct WorkerProcess {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl WorkerProcess {
    pub fn start(env: &BTreeMap<String, String>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("worker.log");
        let out = File::create(&log).expect("the log file");
        let err = out.try_clone().expect("the log file again");
        let child = Command::new(env!("CARGO_BIN_EXE_cacheflow-sync-worker"))
            .arg("run")
            // Only what the test sets: no settings file, no stray CACHEFLOW_* from the shell.
            .env_clear()
            .envs(env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the worker binary");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL: no chance to finish or ack anything.
    pub fn kill(mut self) -> String {
        self.signal("-KILL");
        self.child.wait().expect("reap the killed worker");
        self.logs()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.signal("-TERM");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the worker") {
                return (status, self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the worker ignored SIGTERM; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("check the worker").is_none()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address the worker serves `/metrics` on, from its start-up log line.
    pub async fn metrics_addr(&self) -> String {
        crate::helpers::eventually("the worker to log its metrics address", || async {
            log_fields(&self.logs(), "serving metrics on /metrics").and_then(|fields| {
                fields
                    .get("addr")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
        .await
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // A failed test must not leave workers behind; ignoring errors: it may be gone already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields of the JSON log line whose message is `message`, if the worker logged it.
pub fn log_fields(logs: &str, message: &str) -> Option<serde_json::Map<String, Value>> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line.get("fields")?.as_object().cloned())
        .find(|fields| fields.get("message").and_then(Value::as_str) == Some(message))
}

/// Events a stopped worker took off the stream, from its final "sync worker stopped" line.
pub fn events_handled(logs: &str) -> u64 {
    let fields = log_fields(logs, "sync worker stopped")
        .unwrap_or_else(|| panic!("no 'sync worker stopped' line in:\n{logs}"));
    ["applied", "deleted", "stale", "dead_lettered"]
        .iter()
        .map(|k| fields.get(*k).and_then(Value::as_u64).unwrap_or(0))
        .sum()
}
