//! The documented first steps, exactly as written: the README's protected start (a writer key in
//! `CACHEFLOW_API_KEY`, its hash in `API_KEYS`, `bash infra/scripts/run-local.sh`) on free ports
//! and a temporary data directory, then every command of the README's "Try it" section and of
//! the runner's printed "Try:" list against that stack, each answer checked.
//!
//! The commands are parsed from `README.md` and from the runner's output ([`commands`]), so the
//! test breaks when the docs drift from what the stack does. The runner uses the debug binaries
//! (`BIN_DIR`): run `cargo build --workspace --bins` first, as `infra/scripts/test.sh` does.
//! Every `curl` goes through a wrapper that adds `-w` to report the status on stderr, and
//! nothing else.

mod boot_metrics;
mod cli;
mod commands;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cacheflow_testkit::free_port;
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `cargo build --workspace --bins` put the binaries this test's crate sits with.
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_cacheflow-api"))
        .parent()
        .unwrap()
        .to_owned();
    for binary in ["cacheflow-sync-worker", "cacheflow-loadtests"] {
        assert!(
            dir.join(binary).is_file(),
            "{} is missing: run `cargo build --workspace --bins` first (infra/scripts/test.sh does)",
            dir.join(binary).display()
        );
    }
    dir
}

/// The stack `run-local.sh` started in `data`; stopped by `stop-local.sh` on drop.
struct LocalStack {
    data: tempfile::TempDir,
    api_addr: String,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in ["api.log", "worker.log"] {
                let text = std::fs::read_to_string(self.data.path().join("logs").join(log))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- last lines of {log} ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let stopped = Command::new("bash")
            .arg("infra/scripts/stop-local.sh")
            .current_dir(repo_root())
            .env("DATA_DIR", self.data.path())
            .output();
        if let Ok(out) = stopped {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

/// The README's protected-start block, run by bash as written with free ports; returns the
/// stack, the runner's output and the writer key the block made.
fn protected_start(block: &[String]) -> (LocalStack, String, String) {
    assert!(
        block.last().is_some_and(|c| c.contains("run-local.sh")),
        "the protected-start block ends with the runner: {block:?}"
    );
    let data = tempfile::tempdir().unwrap();
    let api_addr = format!("127.0.0.1:{}", free_port());
    let key_file = data.path().join("client.key");
    // The block, then the key it exported, for the commands that follow.
    let script = format!(
        "set -euo pipefail\n{}\nprintf %s \"$CACHEFLOW_API_KEY\" > '{}'\n",
        block.join("\n"),
        key_file.display()
    );
    let stack = LocalStack { data, api_addr };
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(repo_root())
        .env_remove("API_KEYS")
        .env_remove("CACHEFLOW_API_KEY")
        .env("API_ADDR", &stack.api_addr)
        .env("REDIS_URL", format!("redis://127.0.0.1:{}", free_port()))
        .env("NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .env("API_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("WORKER_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("PROMETHEUS_ADDR", "off")
        .env("DATA_DIR", stack.data.path())
        .env("BIN_DIR", bin_dir())
        // Enough for every command to find what it asks for; fewer writes on a loaded machine.
        .env("SEED_COUNT", "300")
        .output()
        .expect("bash runs");
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the protected start failed ({}):\n{output}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.len(), 64, "the block exports a 32-byte hex key");
    (stack, output, key)
}

/// A directory with a `curl` that is the real one plus `-w`, reporting the status on stderr.
fn curl_wrapper(dir: &Path) -> PathBuf {
    let real = cacheflow_testkit::require_binary("curl");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("curl");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' -w '%{{stderr}}HTTP_STATUS=%{{http_code}}\\n' \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    bin
}

/// Runs one documented command as written (bash, the key in the environment).
fn run(command: &str, key: &str, wrapper: &Path) -> (u16, String) {
    let path = format!("{}:{}", wrapper.display(), std::env::var("PATH").unwrap());
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new("bash")
        .arg("-c")
        .arg(command)
        .env("PATH", path)
        .env("CACHEFLOW_API_KEY", key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(status.success(), "`{command}` failed: {stderr}");
    let statuses: Vec<u16> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("HTTP_STATUS="))
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(statuses.len(), 1, "`{command}`: one request each: {stderr}");
    (statuses[0], String::from_utf8_lossy(&stdout).into_owned())
}

/// Checks the answer of one command by what it asked for.
fn check(command: &str, addr: &str, status: u16, output: &str) {
    let method = commands::method(command);
    let path = commands::path(command, addr);
    let body = if command.contains(" -i ") {
        let (head, body) = output
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("`{command}`: no headers in {output:?}"));
        assert!(head.starts_with("HTTP/1.1 "), "`{command}`: {head}");
        body
    } else {
        output
    };
    let wanted: &[u16] = match method {
        "PUT" => &[200, 201],
        "DELETE" => &[204],
        _ => &[200],
    };
    assert!(wanted.contains(&status), "`{command}`: {status} {body}");
    if method == "DELETE" {
        assert!(body.is_empty(), "`{command}`: {body}");
        return;
    }
    let json: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("`{command}`: not JSON ({e}): {body}"));
    let route = path.split('?').next().unwrap();
    if let Some(sent) = commands::body_sent(command) {
        // A write answers with the stored document: what was sent, and a version.
        for (field, value) in sent.as_object().unwrap() {
            assert_eq!(&json[field], value, "`{command}`: {json}");
        }
        assert!(json["version"].as_u64().is_some(), "`{command}`: {json}");
    } else if route.contains("/near/") || route.contains("/top/") {
        let items = json["items"].as_array().map_or(0, Vec::len);
        assert!(
            items > 0,
            "`{command}`: the seeded places are projected: {json}"
        );
    } else if route == "/readyz" {
        assert_eq!(json["status"], "ready", "{json}");
    } else if route.starts_with("/v1/collections") {
        assert!(
            json["indexes"].is_array() || json["collections"].is_array(),
            "`{command}`: {json}"
        );
    } else if path.contains("?ids=") {
        assert_eq!(json["missing"], Value::Array(vec![]), "`{command}`: {json}");
    } else if let Some(id) = route.strip_suffix("/fields") {
        let id = id.rsplit('/').next().unwrap();
        assert!(
            json.as_object().is_some_and(|o| !o.is_empty()),
            "`{command}` ({id}): {json}"
        );
    } else {
        let id = route.rsplit('/').next().unwrap();
        assert_eq!(json["id"], id, "`{command}`: {json}");
    }
}

#[test]
fn the_documented_protected_start_and_every_try_command_work() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let blocks = commands::readme_blocks(&readme, "## Try it");
    let (start, walked): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|block| block.iter().any(|c| c.contains("run-local.sh")));
    assert_eq!(start.len(), 1, "one protected-start block in `Try it`");

    let (stack, output, key) = protected_start(&start[0]);
    let addr = &stack.api_addr;
    let wrapper = curl_wrapper(stack.data.path());

    let readme_commands: Vec<String> = walked
        .into_iter()
        .flatten()
        .map(|c| c.replace("localhost:8080", addr))
        .collect();
    let printed = commands::try_list(&output);
    // Both lists cover reads, near, top and writes.
    for list in [&readme_commands, &printed] {
        for needed in [
            "/near/",
            "/top/",
            "-X PUT",
            "-X PATCH",
            "-X DELETE",
            "/v1/collections",
        ] {
            assert!(
                list.iter().any(|c| c.contains(needed)),
                "no `{needed}` command in {list:#?}"
            );
        }
    }
    for command in printed.iter().chain(&readme_commands) {
        assert!(command.starts_with("curl "), "`{command}`");
        let (status, answer) = run(command, &key, &wrapper);
        check(command, addr, status, &answer);
    }

    // The stack is really protected: the same write without the key is refused.
    let unkeyed = format!(
        "curl -s -X PUT {addr}/v1/places/no-key -H 'content-type: application/json' -d '{{}}'"
    );
    let (status, answer) = run(&unkeyed, "", &wrapper);
    assert_eq!(status, 401, "{answer}");
}
