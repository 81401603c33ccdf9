//! The fixtures against real servers: start, stop, restart on the same port, cleanup on drop,
//! and the watchdog that kills servers whose test process is gone.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cacheflow_testkit::{
    free_port, require_binary, shared_nats, shared_redis, unique_name, NatsServer, RedisServer,
};

// ---------------------------------------------------------------------------------------------
// Raw-protocol helpers (std only)
// ---------------------------------------------------------------------------------------------

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Sends one inline Redis command and returns the first reply line.
fn redis_cmd(port: u16, command: &str) -> std::io::Result<String> {
    let mut stream = connect(port)?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Alive means: /proc/<pid> exists and the process is not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
    }
}

fn eventually(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal NATS client: enough to drive the JetStream API with request/reply.
struct RawNats {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawNats {
    fn connect(port: u16) -> RawNats {
        let stream = connect(port).expect("connect to nats");
        let writer = stream.try_clone().unwrap();
        let mut nats = RawNats {
            reader: BufReader::new(stream),
            writer,
        };
        let info = nats.line();
        assert!(info.starts_with("INFO "), "expected INFO, got {info:?}");
        nats.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nSUB _INBOX.testkit 1\r\n");
        nats
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read from nats");
        line.trim_end().to_string()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to nats");
    }

    /// Publishes `payload` to `subject` with the inbox as reply subject; returns the reply.
    fn request(&mut self, subject: &str, payload: &str) -> String {
        let publish = format!(
            "PUB {subject} _INBOX.testkit {}\r\n{payload}\r\n",
            payload.len()
        );
        self.send(publish.as_bytes());
        loop {
            let line = self.line();
            if line == "PING" {
                self.send(b"PONG\r\n");
            } else if let Some(header) = line.strip_prefix("MSG ") {
                let len: usize = header
                    .split_whitespace()
                    .last()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("bad MSG line {line:?}"));
                let mut body = vec![0u8; len + 2];
                self.reader.read_exact(&mut body).expect("read MSG body");
                body.truncate(len);
                return String::from_utf8(body).expect("utf-8 reply");
            } else if line.starts_with("-ERR") {
                panic!("nats error: {line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

#[test]
fn redis_starts_stops_and_restarts_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    assert!(redis.is_running());
    assert_eq!(redis_cmd(port, "PING").unwrap(), "+PONG");
    assert_eq!(redis_cmd(port, "SET testkit:k v").unwrap(), "+OK");
    assert_eq!(redis_cmd(port, "CONFIG GET save").unwrap(), "*2");

    redis.stop();
    assert!(!redis.is_running());
    assert!(redis.pid().is_none());
    assert!(port_is_free(port), "stop() must free port {port}");
    assert!(
        redis_cmd(port, "PING").is_err(),
        "nothing may answer after stop()"
    );
    redis.stop(); // idempotent

    redis.restart();
    assert!(redis.is_running());
    assert_eq!(redis.port(), port);
    assert_eq!(redis_cmd(port, "PING").unwrap(), "+PONG");
    // No persistence: the key is gone.
    assert_eq!(redis_cmd(port, "GET testkit:k").unwrap(), "$-1");

    // Restarting a running server works too.
    assert_eq!(redis_cmd(port, "SET testkit:k v").unwrap(), "+OK");
    let pid_before = redis.pid().unwrap();
    redis.restart();
    assert_ne!(redis.pid().unwrap(), pid_before);
    assert!(!process_alive(pid_before));
    assert_eq!(redis_cmd(port, "GET testkit:k").unwrap(), "$-1");
}

#[test]
fn redis_drop_kills_the_server_and_removes_its_directory() {
    let redis = RedisServer::start();
    let pid = redis.pid().expect("running server has a pid");
    let port = redis.port();
    let dir = redis.dir().to_path_buf();
    assert!(process_alive(pid));
    assert!(dir.join("redis.log").exists());

    drop(redis);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "redis-server {pid} must be killed and reaped on drop"
    );
    assert!(!dir.exists(), "temp dir {} must be removed", dir.display());
    eventually("the port is free", Duration::from_secs(5), || {
        port_is_free(port)
    });
}

#[test]
fn shared_redis_is_one_server() {
    let a = shared_redis();
    let b = shared_redis();
    assert!(std::ptr::eq(a, b));
    assert!(a.is_running());
    let key = unique_name("shared");
    assert_eq!(redis_cmd(a.port(), &format!("SET {key} 1")).unwrap(), "+OK");
    assert_eq!(redis_cmd(b.port(), &format!("EXISTS {key}")).unwrap(), ":1");
}

// ---------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------

fn stream_messages(port: u16, stream: &str) -> String {
    RawNats::connect(port).request(&format!("$JS.API.STREAM.INFO.{stream}"), "")
}

#[test]
fn nats_starts_stops_and_restarts_keeping_jetstream_data() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    assert!(nats.is_running());

    let stream = unique_name("stream");
    {
        let mut client = RawNats::connect(port);
        let created = client.request(
            &format!("$JS.API.STREAM.CREATE.{stream}"),
            &format!(
                "{{\"name\":\"{stream}\",\"subjects\":[\"{stream}.>\"],\"storage\":\"file\"}}"
            ),
        );
        assert!(
            !created.contains("\"error\""),
            "stream create failed: {created}"
        );
        let ack = client.request(&format!("{stream}.one"), "hello");
        assert!(ack.contains("\"seq\":1"), "publish not acknowledged: {ack}");
    }
    let info = stream_messages(port, &stream);
    assert!(info.contains("\"messages\":1"), "{info}");

    nats.stop();
    assert!(!nats.is_running());
    assert!(port_is_free(port), "stop() must free port {port}");
    assert!(connect(port).is_err(), "nothing may listen after stop()");
    nats.stop(); // idempotent

    nats.restart();
    assert!(nats.is_running());
    assert_eq!(nats.port(), port);
    let info = stream_messages(port, &stream);
    assert!(
        info.contains("\"messages\":1"),
        "the stream and its message must survive a restart: {info}"
    );
    assert!(nats.store_dir().join("jetstream").is_dir());
}

#[test]
fn nats_drop_kills_the_server_and_removes_its_directory() {
    let nats = NatsServer::start();
    let pid = nats.pid().expect("running server has a pid");
    let port = nats.port();
    let store = nats.store_dir();
    assert!(process_alive(pid));

    drop(nats);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "nats-server {pid} must be killed and reaped on drop"
    );
    assert!(!store.exists(), "store {} must be removed", store.display());
    eventually("the port is free", Duration::from_secs(5), || {
        port_is_free(port)
    });
}

#[test]
fn shared_nats_is_one_server() {
    let a = shared_nats();
    assert!(std::ptr::eq(a, shared_nats()));
    let mut client = RawNats::connect(a.port());
    let info = client.request("$JS.API.INFO", "");
    assert!(
        info.contains("\"streams\""),
        "JetStream account info: {info}"
    );
}

// ---------------------------------------------------------------------------------------------
// Servers never outlive the test process
// ---------------------------------------------------------------------------------------------

const ORPHAN_ENV: &str = "CACHEFLOW_TESTKIT_ORPHAN_HELPER";

/// Run by `servers_die_with_a_killed_test_process` in a child process: starts servers held in
/// statics (never dropped), reports them, then waits to be killed.
#[test]
#[ignore = "helper process for servers_die_with_a_killed_test_process"]
fn orphan_helper() {
    if std::env::var_os(ORPHAN_ENV).is_none() {
        return;
    }
    let redis = shared_redis();
    let nats = shared_nats();
    println!(
        "TESTKIT_ORPHAN {} {} {} {} {}",
        redis.pid().unwrap(),
        redis.port(),
        nats.pid().unwrap(),
        nats.port(),
        redis.dir().display()
    );
    std::io::stdout().flush().unwrap();
    // Bounded: the parent kills this process long before.
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn servers_die_with_a_killed_test_process() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "orphan_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ORPHAN_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn helper test process");
    let stdout = helper.stdout.take().unwrap();
    let mut report = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read helper output");
        // libtest prints "test orphan_helper ... " on the same line first.
        if let Some((_, rest)) = line.split_once("TESTKIT_ORPHAN ") {
            let (numbers, dir) = rest.rsplit_once(' ').unwrap();
            let numbers: Vec<u32> = numbers.split(' ').map(|n| n.parse().unwrap()).collect();
            report = Some((numbers, std::path::PathBuf::from(dir)));
            break;
        }
    }
    let (report, redis_dir) = report.expect("helper did not report its servers");
    let (redis_pid, redis_port, nats_pid, nats_port) =
        (report[0], report[1] as u16, report[2], report[3] as u16);
    assert!(process_alive(redis_pid) && process_alive(nats_pid));
    assert!(redis_dir.is_dir());

    helper.kill().expect("SIGKILL the helper");
    helper.wait().unwrap();

    eventually(
        "the orphaned redis-server is killed",
        Duration::from_secs(5),
        || !process_alive(redis_pid),
    );
    eventually(
        "the orphaned nats-server is killed",
        Duration::from_secs(5),
        || !process_alive(nats_pid),
    );
    eventually(
        "the orphaned servers' ports are free",
        Duration::from_secs(5),
        || port_is_free(redis_port) && port_is_free(nats_port),
    );
    eventually(
        "the orphaned server's directory is removed",
        Duration::from_secs(5),
        || !redis_dir.exists(),
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

#[test]
fn unique_names_are_unique_and_use_a_safe_charset() {
    let names: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..500)
                        .map(|_| unique_name("a.b-c d*>"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "unique_name repeated itself");
    for name in &names {
        assert!(name.starts_with("t_a_b_c_d___"), "{name}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name} has a character outside [A-Za-z0-9_]"
        );
        assert!(
            name.contains(&format!("_{}_", std::process::id())),
            "{name}"
        );
    }
}

#[test]
fn free_ports_are_never_handed_out_twice() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len());
    assert!(ports.iter().all(|&p| p != 0));
    assert!(port_is_free(ports[0]));
}

#[test]
fn require_binary_finds_binaries_on_path_and_in_sbin() {
    assert!(require_binary("sh").is_absolute());
    let nats = require_binary("nats-server");
    assert!(nats.ends_with("nats-server") && nats.is_file());
    assert!(require_binary("redis-server").is_file());
}

#[test]
fn require_binary_panics_with_install_instructions() {
    let err = std::panic::catch_unwind(|| require_binary("cacheflow-no-such-binary"))
        .expect_err("a missing binary must panic, never skip");
    let message = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert_eq!(
        message,
        "`cacheflow-no-such-binary` not found: install it (apt-get install \
         cacheflow-no-such-binary) or run infra/scripts/test.sh, which installs it"
    );
}

#[test]
#[should_panic(
    expected = "`redis-cli-missing` not found: install it (apt-get install redis-cli-missing) or run infra/scripts/test.sh, which installs it"
)]
fn a_missing_binary_fails_the_test() {
    require_binary("redis-cli-missing");
}
