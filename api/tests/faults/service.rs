//! One of the workspace's binaries as a child process: only the environment the scenario gives
//! it, output appended to a log file that survives restarts, stopped only with SIGKILL (the
//! faults are crashes), killed when dropped.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub struct Service {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Not started yet; the log is `<dir>/<name>.log`.
    pub fn new(
        name: &'static str,
        program: &Path,
        args: &[&str],
        env: &BTreeMap<String, String>,
        dir: &Path,
    ) -> Self {
        Self {
            name,
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.clone(),
            dir: dir.to_path_buf(),
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log file");
        // Restarts share the file: mark where each run begins.
        writeln!(log, "---- starting {} ----", self.name).expect("write the log file");
        let child = command(&self.program, &self.args, &self.env, &self.dir)
            .stdout(log.try_clone().expect("the log file again"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL: nothing is finished, flushed or acked. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when it already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `Some(how)` once the process has exited on its own (or was never started).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut() {
            None => Some("not running".into()),
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(format!("exited with {status}")),
                Ok(None) => None,
                Err(e) => Some(format!("cannot be waited for: {e}")),
            },
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `program args` once to completion (an operator command) with the same environment.
///
/// # Panics
/// When it does not finish within `within`; the child is killed first.
pub async fn run_once(
    program: &Path,
    args: &[&str],
    env: &BTreeMap<String, String>,
    dir: &Path,
    within: Duration,
) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut command = tokio::process::Command::from(command(program, &args, env, dir));
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`{} {}` ran longer than {within:?}",
                program.display(),
                args.join(" ")
            )
        })
        .expect("wait for the command")
}

fn command(program: &Path, args: &[String], env: &BTreeMap<String, String>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        // Only what the scenario sets: no settings file, no stray CACHEFLOW_* from the shell.
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// The last `lines` lines of a log file, headed by its path.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return format!("({} unreadable: {e})", path.display()),
    };
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!(
        "==== {} (last {} lines) ====\n{}",
        path.display(),
        all.len() - start,
        all[start..].join("\n")
    )
}
