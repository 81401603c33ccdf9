//! RAII fixtures that run **real** `redis-server` and `nats-server` processes for cacheflow's
//! tests.
//!
//! - [`RedisServer::start`] launches a private `redis-server` on a free port of 127.0.0.1, in a
//!   temporary directory, with persistence off (`save ""`, `appendonly no`), and returns once the
//!   server answers `PING` with `+PONG`.
//! - [`NatsServer::start`] launches a private `nats-server -js` on a free port with its JetStream
//!   store in a temporary directory and a monitoring port, and returns once the server sends its
//!   `INFO` line and `/healthz?js-enabled-only=true` answers 200.
//! - Both can be [`stop`](RedisServer::stop)ped (the process is killed and reaped, and the call
//!   returns only once the port is free again) and [`restart`](RedisServer::restart)ed on the
//!   same port: Redis comes back empty, NATS comes back with the same store directory so
//!   JetStream streams and their messages survive. Use this to test outages and recovery.
//! - Dropping a fixture kills its server and removes its temporary directory.
//! - [`shared_redis`] and [`shared_nats`] hand out one server per test process, for tests that
//!   isolate themselves by namespace (see [`unique_name`]) instead of by server.
//!
//! Servers never outlive the test process: each one is started by a tiny `sh` watchdog that
//! forks a monitor and then `exec`s the server, so the server *is* the child process this crate
//! holds (stopping it kills the server itself), while the monitor kills it with `SIGKILL` as soon
//! as the test process is gone — even if the fixture sits in a `static` that is never dropped or
//! the test process is killed with `SIGKILL` — and then removes the fixture's temporary
//! directory. Readiness probes also check that the server answering is ours (Redis reports our
//! pid, NATS our unique server name), and `start` retries on fresh ports if another process took
//! the port first.
//!
//! Server output goes to a log file in the fixture's temporary directory; when a server does not
//! come up, the panic message carries the tail of that log.
//!
//! A missing binary makes tests **fail**, never skip: [`require_binary`] panics with a message
//! that says how to install it (`infra/scripts/test.sh` installs everything the tests need).
//!
//! Only the standard library talks to the servers here (raw TCP), so this crate does not depend
//! on any Redis or NATS client.

pub mod properties;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// How long [`RedisServer`] waits for `PING` to be answered.
const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`NatsServer`] waits for the protocol and JetStream (recovering a store takes a
/// moment longer than a cold start).
const NATS_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `stop` waits for the port to be bindable again.
const PORT_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports `start` tries when a server dies during start-up (another process may
/// have taken the port between [`free_port`] and the server's bind).
const START_ATTEMPTS: usize = 3;
/// How many log lines panic messages carry.
const LOG_TAIL_LINES: usize = 40;
/// Directories searched after `PATH` (sbin directories are often missing from a user's `PATH`,
/// and Debian puts `nats-server` in `/usr/sbin`).
const EXTRA_BIN_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// `sh -c` script: `$1` is the test process id, `$2` the fixture's temporary directory, the rest
/// the server command line. A background monitor kills the server once the test process is gone
/// and then removes the directory (a fixture in a `static` is never dropped); the shell then
/// `exec`s the server, so the server keeps the shell's pid (`$$`), which is the pid of the
/// [`Child`] we hold. When the fixture kills the server itself, the monitor just exits.
const WATCHDOG: &str = r#"p=$1; d=$2; shift 2
(
  while kill -0 $$ 2>/dev/null; do
    if ! kill -0 "$p" 2>/dev/null; then
      kill -9 $$ 2>/dev/null
      sleep 0.5
      [ -n "$d" ] && rm -rf -- "$d"
      exit 0
    fi
    sleep 0.3
  done
) </dev/null &
exec "$@""#;

// ---------------------------------------------------------------------------------------------
// Helpers: names, ports, binaries
// ---------------------------------------------------------------------------------------------

/// A name unique within this machine and run, made only of `[A-Za-z0-9_]`, so it is safe as a
/// NATS stream name, a subject token, a Redis key prefix and a file name:
/// `t_<prefix>_<pid>_<counter>_<nanos>`. Characters of `prefix` outside that set become `_`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t_{prefix}_{}_{counter}_{nanos}", std::process::id())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it).
/// Never hands out the same port twice within one process.
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the address of a bound listener: {e}"))
            .port();
        drop(listener);
        let mut seen = handed_out.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(port) {
            return port;
        }
    }
    panic!("could not find a free TCP port on 127.0.0.1 that was not handed out before");
}

/// The full path of the executable `name`, looked up on `PATH` and then in the usual system
/// directories (`/usr/sbin`, `/usr/bin`, `/usr/local/bin`, ...).
///
/// # Panics
/// When it is not found, with a message saying how to install it. A missing server binary must
/// fail the tests, never skip them.
pub fn require_binary(name: &str) -> PathBuf {
    if let Some(found) = find_binary(name) {
        return found;
    }
    let package = match name {
        "redis-cli" | "redis-benchmark" => "redis-tools",
        "promtool" => "prometheus",
        other => other,
    };
    panic!(
        "`{name}` not found: install it (apt-get install {package}) or run infra/scripts/test.sh, \
         which installs it"
    );
}

fn find_binary(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// The process under the watchdog
// ---------------------------------------------------------------------------------------------

/// One server process, started under the watchdog, with its output appended to `log`.
struct Supervised {
    what: &'static str,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Supervised {
    fn new(what: &'static str, program: PathBuf, args: Vec<String>, log: PathBuf) -> Self {
        Supervised {
            what,
            program,
            args,
            log,
            child: Mutex::new(None),
        }
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| {
                panic!("cannot open {} log {}: {e}", self.what, self.log.display())
            });
        let err_log = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate the {} log handle: {e}", self.what));
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("cacheflow-testkit-watchdog")
            .arg(std::process::id().to_string())
            .arg(self.log.parent().unwrap_or(Path::new("")))
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({} via sh): {e}",
                    self.what,
                    self.program.display()
                )
            });
        *self.child() = Some(child);
    }

    /// `Some(description)` once the process has exited (or was never started).
    fn exited(&self) -> Option<String> {
        match self.child().as_mut() {
            None => Some("not running".into()),
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(format!("exited with {status}")),
                Ok(None) => None,
                Err(e) => Some(format!("cannot be waited for: {e}")),
            },
        }
    }

    fn is_running(&self) -> bool {
        self.exited().is_none()
    }

    /// The pid of the last spawned process, whether or not it still runs.
    fn spawned_pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    fn pid(&self) -> Option<u32> {
        if self.is_running() {
            self.child().as_ref().map(Child::id)
        } else {
            None
        }
    }

    /// Kills the server (SIGKILL) and reaps it. Idempotent.
    fn kill(&mut self) {
        if let Some(mut child) = self
            .child
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // Fails only when it already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Err(e) = File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        return format!("(log {} unreadable: {e})", path.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        format!("(log {} is empty)", path.display())
    } else {
        format!("last lines of {}:\n{}", path.display(), tail.join("\n"))
    }
}

/// Waits until nothing listens on `port` and it can be bound again.
fn wait_port_released(port: u16, what: &str) {
    let deadline = Instant::now() + PORT_RELEASE_TIMEOUT;
    loop {
        // std sets SO_REUSEADDR like the servers do, so TIME_WAIT leftovers don't count.
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: port {port} is still in use {}s after the server was killed",
                PORT_RELEASE_TIMEOUT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr(port), Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    Ok(stream)
}

/// Reads from `stream` until `done(bytes so far)` or EOF/error/`limit` bytes.
fn read_until(stream: &mut TcpStream, limit: usize, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !done(&buf) && buf.len() < limit {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

/// Whether the Redis on `port` answers `PING` and is our process (`INFO server` reports `pid`:
/// another process may have grabbed the port before our server bound it).
fn redis_ready(port: u16, pid: Option<u32>) -> bool {
    let Ok(mut stream) = connect(port) else {
        return false;
    };
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let reply = read_until(&mut stream, 256, |b| b.ends_with(b"\r\n"));
    if !reply.starts_with(b"+PONG") {
        return false;
    }
    if stream.write_all(b"INFO server\r\n").is_err() {
        return false;
    }
    let has_pid_line = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        text.split_once("\r\nprocess_id:")
            .is_some_and(|(_, rest)| rest.contains("\r\n"))
    };
    let info = read_until(&mut stream, 64 * 1024, has_pid_line);
    let info = String::from_utf8_lossy(&info);
    let reported = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    reported.is_some() && reported == pid
}

/// The first line the NATS server sends (`INFO {...}`), if it sends one.
fn nats_info(port: u16) -> Option<String> {
    let mut stream = connect(port).ok()?;
    let line = read_until(&mut stream, 64 * 1024, |b| b.ends_with(b"\r\n"));
    let line = String::from_utf8(line).ok()?;
    line.starts_with("INFO ")
        .then(|| line.trim_end().to_string())
}

/// Status code of a plain HTTP/1.0 GET to 127.0.0.1:`port`.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = connect(port).ok()?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let response = read_until(&mut stream, 64 * 1024, |b| {
        b.windows(2).any(|w| w == b"\r\n")
    });
    let status_line = String::from_utf8_lossy(&response);
    status_line.split_whitespace().nth(1)?.parse().ok()
}

enum Ready {
    Yes,
    /// The process exited during start-up: `(how, log tail)`.
    Died(String, String),
    TimedOut,
}

fn wait_ready(
    server: &Supervised,
    timeout: Duration,
    probe: impl Fn(&Supervised) -> bool,
) -> Ready {
    let deadline = Instant::now() + timeout;
    loop {
        if probe(server) {
            return Ready::Yes;
        }
        if let Some(how) = server.exited() {
            return Ready::Died(how, server.log_tail());
        }
        if Instant::now() >= deadline {
            return Ready::TimedOut;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `server` (fresh ports chosen by `configure` on each attempt) until `probe` succeeds.
/// Retries with new ports when the server dies during start-up, since another process may have
/// taken a port between [`free_port`] and the server's bind.
fn start_with_retries<S>(
    what: &str,
    timeout: Duration,
    mut make: impl FnMut() -> S,
    supervised: impl Fn(&S) -> &Supervised,
    probe: impl Fn(&S) -> bool,
) -> S {
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let fixture = make();
        supervised(&fixture).spawn();
        match wait_ready(supervised(&fixture), timeout, |_| probe(&fixture)) {
            Ready::Yes => return fixture,
            Ready::Died(how, tail) => {
                failures.push(format!("{what} {how} during start-up; {tail}"))
            }
            Ready::TimedOut => {
                let tail = supervised(&fixture).log_tail();
                panic!(
                    "{what} did not become ready within {}s; {tail}",
                    timeout.as_secs()
                );
            }
        }
    }
    panic!(
        "{what} could not be started ({START_ATTEMPTS} attempts):\n{}",
        failures.join("\n---\n")
    );
}

fn restart_supervised(
    server: &mut Supervised,
    port: u16,
    what: &str,
    timeout: Duration,
    probe: impl Fn(&Supervised) -> bool,
) {
    server.kill();
    wait_port_released(port, what);
    server.spawn();
    match wait_ready(server, timeout, probe) {
        Ready::Yes => {}
        Ready::Died(how, tail) => panic!("{what} {how} while restarting on port {port}; {tail}"),
        Ready::TimedOut => panic!(
            "{what} did not become ready within {}s after a restart on port {port}; {}",
            timeout.as_secs(),
            server.log_tail()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A private `redis-server` on 127.0.0.1 without persistence. Killed when dropped.
pub struct RedisServer {
    port: u16,
    server: Supervised,
    // Declared last: removed after the server is gone.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    /// When `redis-server` is missing, or the server does not come up within ~10 s (the message
    /// includes the tail of its log).
    pub fn start() -> RedisServer {
        let binary = require_binary("redis-server");
        start_with_retries(
            "redis-server",
            REDIS_READY_TIMEOUT,
            || Self::prepare(&binary, free_port()),
            |fixture| &fixture.server,
            |fixture| redis_ready(fixture.port, fixture.server.spawned_pid()),
        )
    }

    fn prepare(binary: &Path, port: u16) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("cacheflow-redis-")
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("cannot create a temporary directory for redis-server: {e}")
            });
        let conf = dir.path().join("redis.conf");
        let config = format!(
            "bind 127.0.0.1\n\
             port {port}\n\
             protected-mode yes\n\
             daemonize no\n\
             save \"\"\n\
             appendonly no\n\
             dir {}\n\
             logfile \"\"\n\
             loglevel notice\n",
            quote_redis_conf(&dir.path().to_string_lossy())
        );
        fs::write(&conf, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        let server = Supervised::new(
            "redis-server",
            binary.to_path_buf(),
            vec![conf.to_string_lossy().into_owned()],
            dir.path().join("redis.log"),
        );
        RedisServer { port, server, dir }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// The fixture's temporary directory (holds `redis.conf` and `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL), reaps it and waits until its port is free. Idempotent.
    pub fn stop(&mut self) {
        let was_started = self
            .server
            .child
            .get_mut()
            .map(|c| c.is_some())
            .unwrap_or(true);
        self.server.kill();
        if was_started {
            wait_port_released(self.port, "redis-server");
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs) and waits until
    /// it answers `PING`. Its data is gone: there is no persistence.
    pub fn restart(&mut self) {
        let port = self.port;
        restart_supervised(
            &mut self.server,
            port,
            "redis-server",
            REDIS_READY_TIMEOUT,
            |server| redis_ready(port, server.spawned_pid()),
        );
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.server.kill();
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// A double-quoted string for redis.conf.
fn quote_redis_conf(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

// ---------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------

/// A private `nats-server -js` on 127.0.0.1 with its JetStream store in a temporary directory.
/// Killed when dropped.
pub struct NatsServer {
    port: u16,
    monitor_port: u16,
    /// `server_name`, unique: tells our server from another one on the same port.
    name: String,
    server: Supervised,
    // Declared last: removed after the server is gone.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and waits until it speaks the NATS protocol
    /// and its monitoring endpoint reports JetStream healthy.
    ///
    /// # Panics
    /// When `nats-server` is missing, or the server does not come up in time (the message
    /// includes the tail of its log).
    pub fn start() -> NatsServer {
        let binary = require_binary("nats-server");
        start_with_retries(
            "nats-server",
            NATS_READY_TIMEOUT,
            || Self::prepare(&binary, free_port(), free_port()),
            |fixture| &fixture.server,
            |fixture| nats_ready(fixture.port, fixture.monitor_port, &fixture.name),
        )
    }

    fn prepare(binary: &Path, port: u16, monitor_port: u16) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("cacheflow-nats-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for nats-server: {e}"));
        let store = dir.path().join("store");
        let name = unique_name("nats");
        fs::create_dir_all(&store)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", store.display()));
        let args = vec![
            "-js".to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            monitor_port.to_string(),
            "-sd".into(),
            store.to_string_lossy().into_owned(),
            "-n".into(),
            name.clone(),
        ];
        let server = Supervised::new(
            "nats-server",
            binary.to_path_buf(),
            args,
            dir.path().join("nats.log"),
        );
        NatsServer {
            port,
            monitor_port,
            name,
            server,
            dir,
        }
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port on 127.0.0.1 (`/healthz`, `/varz`, `/jsz`, ...).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// The JetStream store directory (kept across [`restart`](Self::restart)).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Kills the server (SIGKILL), reaps it and waits until its ports are free. Idempotent.
    pub fn stop(&mut self) {
        let was_started = self
            .server
            .child
            .get_mut()
            .map(|c| c.is_some())
            .unwrap_or(true);
        self.server.kill();
        if was_started {
            wait_port_released(self.port, "nats-server");
            wait_port_released(self.monitor_port, "nats-server monitoring");
        }
    }

    /// Starts the server again on the same ports with the same store directory (stopping it
    /// first if it runs), so JetStream streams and messages survive; waits until it is ready.
    pub fn restart(&mut self) {
        let (port, monitor_port, name) = (self.port, self.monitor_port, self.name.clone());
        self.server.kill();
        wait_port_released(monitor_port, "nats-server monitoring");
        restart_supervised(
            &mut self.server,
            port,
            "nats-server",
            NATS_READY_TIMEOUT,
            |_| nats_ready(port, monitor_port, &name),
        );
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }
}

/// Whether the NATS server on `port` is ours (its `INFO` names `name`: another process may have
/// grabbed the port before our server bound it) and JetStream is up.
fn nats_ready(port: u16, monitor_port: u16, name: &str) -> bool {
    nats_info(port).is_some_and(|info| info.contains(&format!("\"server_name\":\"{name}\"")))
        && http_status(monitor_port, "/healthz?js-enabled-only=true") == Some(200)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.server.kill();
    }
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("port", &self.port)
            .field("monitor_port", &self.monitor_port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared servers
// ---------------------------------------------------------------------------------------------

/// One `redis-server` for the whole test process, started on first use. It is never dropped;
/// the watchdog kills it when the process exits. Isolate tests with [`unique_name`] key
/// prefixes, and don't stop it (there is no `&mut` access).
pub fn shared_redis() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(RedisServer::start)
}

/// One `nats-server -js` for the whole test process, started on first use. It is never
/// dropped; the watchdog kills it when the process exits. Isolate tests with [`unique_name`]
/// stream names and subjects.
pub fn shared_nats() -> &'static NatsServer {
    static SHARED: OnceLock<NatsServer> = OnceLock::new();
    SHARED.get_or_init(NatsServer::start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_conf_quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote_redis_conf("/tmp/a b"), "\"/tmp/a b\"");
        assert_eq!(quote_redis_conf("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn readiness_probes_check_the_servers_identity() {
        let redis = RedisServer::start();
        let pid = redis.pid();
        assert!(redis_ready(redis.port(), pid));
        assert!(!redis_ready(redis.port(), pid.map(|p| p + 1)));
        assert!(!redis_ready(redis.port(), None));

        let nats = NatsServer::start();
        assert!(nats_ready(nats.port(), nats.monitor_port(), &nats.name));
        assert!(!nats_ready(
            nats.port(),
            nats.monitor_port(),
            "someone_else"
        ));
    }

    #[test]
    fn a_server_dying_at_start_up_reports_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let server = Supervised::new(
            "fake-server",
            PathBuf::from("/bin/sh"),
            vec!["-c".into(), "echo 'Address already in use'; exit 3".into()],
            dir.path().join("fake.log"),
        );
        server.spawn();
        match wait_ready(&server, Duration::from_secs(10), |_| false) {
            Ready::Died(how, tail) => {
                assert!(how.contains("exit status: 3"), "{how}");
                assert!(tail.contains("Address already in use"), "{tail}");
            }
            Ready::Yes | Ready::TimedOut => panic!("the dead server was not noticed"),
        }
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.contains("line 99"));
        assert!(tail.contains(&format!("line {}", 100 - LOG_TAIL_LINES)));
        assert!(!tail.contains(&format!("line {}\n", 100 - LOG_TAIL_LINES - 1)));
        assert!(log_tail(&dir.path().join("missing.log")).contains("unreadable"));
    }
}
