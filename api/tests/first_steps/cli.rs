//! `cacheflow-api --help`, `--version` and `hash-key`, as the binary answers them.

use std::io::Write as _;
use std::process::{Command, Stdio};

fn api(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cacheflow-api"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_the_commands_and_every_environment_variable_with_its_default() {
    let help = api(&["--help"]);
    for wanted in [
        "serve",
        "hash-key",
        "STORE_URL",
        "[sqlite://data/cacheflow.db]",
        "API_ADDR",
        "[127.0.0.1:8080]",
        "METRICS_ADDR",
        "[127.0.0.1:9464]",
        "API_KEYS",
        "ADMIN_ENABLED",
        "CACHEFLOW_CONFIG",
        "RUST_LOG",
    ] {
        assert!(help.contains(wanted), "`{wanted}` missing from:\n{help}");
    }
    assert_eq!(api(&["help"]), help);
}

#[test]
fn version_is_the_crate_version() {
    assert_eq!(
        api(&["--version"]).trim(),
        format!("cacheflow-api {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn hash_key_hashes_an_argument_or_standard_input() {
    // sha256("secret")
    let want = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    assert_eq!(api(&["hash-key", "secret"]).trim(), want);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cacheflow-api"))
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"secret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), want);
}

#[test]
fn unknown_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_cacheflow-api"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
