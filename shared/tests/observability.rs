//! Observability and deployment files, checked against the code:
//!
//! - `infra/docker-compose.yml`: every variable set on a cacheflow service is a setting the
//!   config knows (derived from `Settings`, not a hand-written list), build files, `COPY` sources
//!   and mounted files exist, ports agree with the Prometheus targets.
//! - `infra/prometheus.yml`, `infra/prometheus.local.yml` (promtool), the Grafana provisioning.
//! - `dashboards/*.json`: only declared metrics, every declared metric somewhere, valid PromQL
//!   (promtool), one datasource.
//! - the recorder and its `/metrics` endpoint, and a scrape holding every metric passing
//!   `promtool check metrics`.
//!
//! The worker's real scrape is checked in `sync-worker/tests/worker/observability.rs`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::telemetry::dashboards::{dashboard_metric_names, dashboard_queries};
use cacheflow_shared::telemetry::metrics::{MetricKind, CONTENT_TYPE_TEXT, DESCRIPTIONS};
use cacheflow_shared::telemetry::{install_recorder, names, serve_metrics};
use figment::providers::Serialized;
use figment::Figment;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;
use tokio_util::sync::CancellationToken;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

fn infra() -> PathBuf {
    root().join("infra")
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn compose() -> Yaml {
    yaml(&infra().join("docker-compose.yml"))
}

fn services(compose: &Yaml) -> Vec<(String, Yaml)> {
    compose["services"]
        .as_mapping()
        .expect("compose has services")
        .iter()
        .map(|(name, service)| (name.as_str().unwrap().to_owned(), service.clone()))
        .collect()
}

/// The compose service `name`.
fn service(compose: &Yaml, name: &str) -> Yaml {
    services(compose)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} service"))
        .1
}

fn str_of(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's environment as (name, value), from the map or the `NAME=value` list form.
fn environment(service: &Yaml) -> Vec<(String, String)> {
    match &service["environment"] {
        Yaml::Mapping(map) => map
            .iter()
            .map(|(k, v)| (str_of(k).unwrap(), str_of(v).unwrap_or_default()))
            .collect(),
        Yaml::Sequence(items) => items
            .iter()
            .map(|item| {
                let item = item.as_str().expect("environment entries are strings");
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The build context and Dockerfile of a service built from source, resolved.
fn build_files(service: &Yaml) -> Option<(PathBuf, PathBuf)> {
    let (context, dockerfile) = match &service["build"] {
        Yaml::String(context) => (context.clone(), "Dockerfile".to_owned()),
        Yaml::Mapping(_) => (
            str_of(&service["build"]["context"]).unwrap_or_else(|| ".".into()),
            str_of(&service["build"]["dockerfile"]).unwrap_or_else(|| "Dockerfile".into()),
        ),
        _ => return None,
    };
    let context = infra().join(context);
    let dockerfile = context.join(dockerfile);
    Some((context, dockerfile))
}

/// The services that run cacheflow binaries: those built from `infra/Dockerfile`.
fn cacheflow_services(compose: &Yaml) -> Vec<(String, Yaml)> {
    let ours = infra().join("Dockerfile");
    services(compose)
        .into_iter()
        .filter(|(_, service)| {
            build_files(service)
                .and_then(|(_, dockerfile)| dockerfile.canonicalize().ok())
                .is_some_and(|path| path == ours)
        })
        .collect()
}

/// Every environment name the settings accept, derived from the settings themselves.
fn known_env_names() -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    for role in [Role::Api, Role::Worker] {
        let settings = serde_json::to_value(Settings::defaults(role)).unwrap();
        for (key, value) in settings.as_object().expect("settings are an object") {
            match value {
                Value::Object(section) => {
                    for field in section.keys() {
                        known.insert(format!(
                            "CACHEFLOW_{}__{}",
                            key.to_uppercase(),
                            field.to_uppercase()
                        ));
                    }
                }
                _ => {
                    known.insert(format!("CACHEFLOW_{}", key.to_uppercase()));
                }
            }
        }
    }
    // The documented top-level names: each must be a real top-level setting.
    for name in [
        "STORE_URL",
        "REDIS_URL",
        "NATS_URL",
        "API_ADDR",
        "METRICS_ADDR",
        "PIPELINE_CONFIG",
        "API_KEYS",
    ] {
        assert!(
            known.contains(&format!("CACHEFLOW_{name}")),
            "{name} is documented but is no top-level setting"
        );
        known.insert(name.to_owned());
    }
    known.insert("CACHEFLOW_CONFIG".into());
    known.insert("RUST_LOG".into());
    known
}

#[test]
fn compose_services_set_only_settings_the_config_knows() {
    let known = known_env_names();
    assert!(known.contains("CACHEFLOW_WORKER__BATCH_SIZE"), "{known:?}");
    assert!(known.contains("CACHEFLOW_STREAM__MAX_MSGS_PER_SUBJECT"));
    assert!(!known.contains("CACHEFLOW_WORKER__NOPE"));

    let compose = compose();
    let ours = cacheflow_services(&compose);
    let names: Vec<&str> = ours.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        names.contains(&"api") && names.contains(&"sync-worker"),
        "the api and the sync worker are built from infra/Dockerfile: {names:?}"
    );
    for (name, service) in &ours {
        let env = environment(service);
        assert!(!env.is_empty(), "{name} sets no environment");
        // The seed job is a client: its key is the load generator's, which the settings ignore.
        let client = service["command"][0].as_str() == Some("cacheflow-loadtests");
        for (key, _) in env {
            if client && key == "CACHEFLOW_API_KEY" {
                continue;
            }
            assert!(
                known.contains(&key),
                "service {name} sets {key}, which the config does not know"
            );
        }
    }
}

#[test]
fn compose_values_are_valid_settings() {
    // Each cacheflow service's environment on top of the defaults, as the binary loads it (but
    // without touching this process's environment).
    let compose = compose();
    for (name, service) in cacheflow_services(&compose) {
        let role = if name == "api" {
            Role::Api
        } else {
            Role::Worker
        };
        let mut figment = Figment::from(Serialized::defaults(Settings::defaults(role)));
        for (key, value) in environment(&service) {
            // Not settings: the log filter, the settings file, and a client's key (the loader
            // ignores `CACHEFLOW_API_KEY`).
            if matches!(
                key.as_str(),
                "RUST_LOG" | "CACHEFLOW_CONFIG" | "CACHEFLOW_API_KEY"
            ) {
                continue;
            }
            let path = key
                .strip_prefix("CACHEFLOW_")
                .unwrap_or(&key)
                .replace("__", ".")
                .to_lowercase();
            let value: figment::value::Value = value.parse().expect("env values always parse");
            figment = figment.merge(Serialized::default(&path, value));
        }
        let settings = Settings::from_figment(figment)
            .unwrap_or_else(|e| panic!("service {name}: its environment does not load: {e}"));
        assert_ne!(settings.metrics_addr.port(), 0, "{name}");
        if role == Role::Api {
            // The stack is reachable from the host: it must not run open.
            assert!(
                !settings.api_keys.is_empty(),
                "the api service sets no API_KEYS"
            );
        }
    }
}

/// The sources of the `COPY` instructions of a Dockerfile (not those copying from a stage).
fn copy_sources(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut sources = Vec::new();
    for line in joined.lines().map(str::trim) {
        let Some(rest) = line
            .strip_prefix("COPY ")
            .or_else(|| line.strip_prefix("ADD "))
        else {
            continue;
        };
        let args: Vec<String> = if rest.trim_start().starts_with('[') {
            serde_json::from_str(rest).expect("COPY in JSON form")
        } else {
            rest.split_whitespace().map(str::to_owned).collect()
        };
        if args.iter().any(|a| a.starts_with("--from")) {
            continue;
        }
        let args: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
        let (_dest, srcs) = args.split_last().expect("COPY has a destination");
        sources.extend(srcs.iter().cloned());
    }
    sources
}

#[test]
fn compose_build_files_copy_sources_and_mounts_exist() {
    assert_eq!(
        copy_sources("FROM x AS b\nCOPY --chown=a . .\nCOPY --from=b /x /y\nCOPY a \\\n  b /c/\nCOPY [\"d\", \"/e\"]\n"),
        [".", "a", "b", "d"]
    );
    let compose = compose();
    let mut built = 0;
    for (name, service) in services(&compose) {
        if let Some((context, dockerfile)) = build_files(&service) {
            built += 1;
            assert!(
                context.is_dir(),
                "{name}: no build context {}",
                context.display()
            );
            let text = std::fs::read_to_string(&dockerfile)
                .unwrap_or_else(|e| panic!("{name}: cannot read {}: {e}", dockerfile.display()));
            let sources = copy_sources(&text);
            assert!(
                !sources.is_empty(),
                "{name}: no COPY in {}",
                dockerfile.display()
            );
            for source in sources {
                assert!(
                    context.join(&source).exists(),
                    "{name}: {} copies {source}, which is not in the build context",
                    dockerfile.display()
                );
            }
            // The command is one of the binaries the image builds.
            let command = service["command"][0].as_str().expect("a command");
            assert!(
                text.contains(&format!("target/release/{command}")),
                "{name}: the image does not build {command}"
            );
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = match volume {
                Yaml::String(short) => short.split(':').next().unwrap().to_owned(),
                Yaml::Mapping(_) => str_of(&volume["source"]).unwrap_or_default(),
                _ => continue,
            };
            if source.starts_with('.') || source.starts_with('/') {
                let path = infra().join(&source);
                assert!(
                    path.exists(),
                    "{name} mounts {source}, which does not exist"
                );
            }
        }
    }
    assert!(built >= 2, "the api and the worker are built from source");
}

fn port_of_addr(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{addr} has no port"))
}

fn scrape_job<'a>(config: &'a Yaml, job: &str) -> &'a Yaml {
    config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|c| c["job_name"].as_str() == Some(job))
        .unwrap_or_else(|| panic!("no scrape job {job}"))
}

fn static_targets(job: &Yaml) -> Vec<String> {
    job["static_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

/// The servers report ready through their healthchecks (the API's and the workers' `/readyz` on
/// the ports they listen on), and the seed job starts once both are healthy, with a writer key
/// the api accepts.
#[test]
fn compose_healthchecks_and_the_seed_job_fit_together() {
    let compose = compose();
    let service = |name: &str| service(&compose, name);
    for (name, addr_key) in [("api", "API_ADDR"), ("sync-worker", "METRICS_ADDR")] {
        let service = service(name);
        let port = port_of_addr(
            &environment(&service)
                .into_iter()
                .find(|(k, _)| k == addr_key)
                .unwrap_or_else(|| panic!("{name} sets no {addr_key}"))
                .1,
        );
        let test: Vec<&str> = service["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name} has no healthcheck"))
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert!(
            test.contains(&format!("http://localhost:{port}/readyz").as_str()),
            "{name}: {test:?}"
        );
    }
    for name in ["mongo", "redis", "nats", "prometheus"] {
        assert!(service(name)["healthcheck"]["test"].is_sequence(), "{name}");
    }
    let seed = service("seed");
    for dependency in ["api", "sync-worker"] {
        assert_eq!(
            seed["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "seed waits for {dependency}"
        );
    }
    let command: Vec<&str> = seed["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(command[..2], ["cacheflow-loadtests", "seed"]);
    assert!(
        command.contains(&"--redis"),
        "the seed waits for the projection: {command:?}"
    );
    let key = str_of(&seed["environment"]["CACHEFLOW_API_KEY"]).expect("a writer key");
    let keys = str_of(&service("api")["environment"]["API_KEYS"]).unwrap();
    let writer = format!("writer:{}", cacheflow_shared::security::hash_key(&key));
    assert!(
        keys.split(',').any(|entry| entry.trim() == writer),
        "the seed's key is not a writer key of the api"
    );
}

#[test]
fn prometheus_scrapes_the_api_and_every_worker() {
    let compose = compose();
    let service = |name: &str| service(&compose, name);
    let metrics_port = |name: &str| {
        let env = environment(&service(name));
        let addr = env
            .iter()
            .find(|(k, _)| k == "METRICS_ADDR")
            .unwrap_or_else(|| panic!("{name} sets no METRICS_ADDR"))
            .1
            .clone();
        port_of_addr(&addr)
    };

    // Compose: the api by name, the worker replicas through Docker's DNS (one A record each).
    let config = yaml(&infra().join("prometheus.yml"));
    let api = scrape_job(&config, "cacheflow-api");
    assert_eq!(
        static_targets(api),
        [format!("api:{}", metrics_port("api"))]
    );
    let workers = scrape_job(&config, "cacheflow-sync-worker");
    let dns = &workers["dns_sd_configs"][0];
    assert_eq!(dns["names"][0].as_str(), Some("sync-worker"));
    assert_eq!(dns["type"].as_str(), Some("A"));
    assert_eq!(
        dns["port"].as_u64(),
        Some(u64::from(metrics_port("sync-worker")))
    );
    assert!(
        service("sync-worker")["deploy"]["replicas"].as_u64() >= Some(2),
        "two worker replicas"
    );
    let prometheus = service("prometheus");
    let mounts: Vec<&str> = prometheus["volumes"]
        .as_sequence()
        .expect("prometheus volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("./prometheus.yml:/etc/prometheus/prometheus.yml")),
        "{mounts:?}"
    );

    // Local runner: the binaries' default metrics addresses.
    let local = yaml(&infra().join("prometheus.local.yml"));
    for (job, role) in [
        ("cacheflow-api", Role::Api),
        ("cacheflow-sync-worker", Role::Worker),
    ] {
        assert_eq!(
            static_targets(scrape_job(&local, job)),
            [Settings::defaults(role).metrics_addr.to_string()],
            "{job}"
        );
    }
    let runner = std::fs::read_to_string(infra().join("scripts/run-local.sh")).unwrap();
    assert!(runner.contains("--config.file=infra/prometheus.local.yml"));
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "promtool is missing: install it with `bash infra/scripts/install-deps.sh --test` \
             (Debian package `prometheus`)"
        )
    })
}

/// Runs promtool with `args`, `stdin` piped in; panics with its output unless it succeeds.
fn run_promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {args:?} failed ({}):\n{text}",
        output.status
    );
    text
}

#[test]
fn promtool_accepts_both_prometheus_configs() {
    for file in ["infra/prometheus.yml", "infra/prometheus.local.yml"] {
        let out = run_promtool(&["check", "config", "--syntax-only", file], None);
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

/// The alert rules: valid (`promtool check rules`), their unit tests pass (`promtool test
/// rules`), both Prometheus configs and compose load them, and they query only declared metrics.
#[test]
fn alert_rules_pass_their_promtool_tests_and_use_declared_metrics() {
    let out = run_promtool(&["check", "rules", "infra/prometheus/alerts.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_promtool(&["test", "rules", "infra/prometheus/alerts.test.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
    // Without --syntax-only, promtool also loads the rule files the config names.
    let out = run_promtool(&["check", "config", "infra/prometheus.local.yml"], None);
    assert!(out.contains("1 rule files found"), "{out}");
    let compose_config = yaml(&infra().join("prometheus.yml"));
    assert_eq!(compose_config["rule_files"][0].as_str(), Some("alerts.yml"));
    let prometheus = service(&compose(), "prometheus");
    assert!(
        prometheus["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some("./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro")),
        "compose mounts the rules next to prometheus.yml"
    );

    let rules = yaml(&infra().join("prometheus/alerts.yml"));
    // Declared by the team that emits it, not emitted by every build yet (CONTRACTS.md §9).
    let declared: BTreeSet<&str> = names::all()
        .chain([names::HEARTBEAT_LAG_SECONDS, "up"])
        .collect();
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            let expr = rule["expr"].as_str().unwrap();
            for name in cacheflow_shared::telemetry::dashboards::promql_metric_names(expr) {
                let name = cacheflow_shared::telemetry::dashboards::base_metric_name(&name);
                assert!(
                    declared.contains(name),
                    "{alert} queries {name}, which is not declared"
                );
            }
            alerts.insert(alert.to_owned());
        }
    }
    // The alerts the runbook (docs/OPERATIONS.md) describes.
    let runbook = std::fs::read_to_string(root().join("docs/OPERATIONS.md")).unwrap();
    for alert in &alerts {
        assert!(
            runbook.contains(alert.as_str()),
            "docs/OPERATIONS.md does not describe {alert}"
        );
    }
}

#[test]
fn grafana_is_provisioned_with_the_datasource_and_the_dashboards() {
    let provisioning = infra().join("grafana/provisioning");
    let datasources = yaml(&provisioning.join("datasources/prometheus.yml"));
    let datasource = &datasources["datasources"][0];
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    assert_eq!(datasource["uid"].as_str(), Some("prometheus"));
    assert_eq!(datasource["url"].as_str(), Some("http://prometheus:9090"));

    let providers = yaml(&provisioning.join("dashboards/cacheflow.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("a dashboards path");

    // Compose mounts the provisioning and ../dashboards where the provider looks.
    let compose = compose();
    let grafana = services(&compose)
        .into_iter()
        .find(|(n, _)| n == "grafana")
        .expect("a grafana service")
        .1;
    let mounts: Vec<(String, String)> = grafana["volumes"]
        .as_sequence()
        .expect("grafana volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .map(|m| {
            let mut parts = m.split(':');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        mounts.contains(&("../dashboards".into(), path.into())),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&(
            "./grafana/provisioning".into(),
            "/etc/grafana/provisioning".into()
        )),
        "{mounts:?}"
    );
    let home = environment(&grafana)
        .into_iter()
        .find(|(k, _)| k == "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .map(|(_, v)| v);
    if let Some(home) = home {
        let file = home
            .strip_prefix(&format!("{path}/"))
            .expect("the home dashboard is a provisioned one");
        assert!(root().join("dashboards").join(file).is_file(), "{home}");
    }
}

fn dashboards_dir() -> PathBuf {
    root().join("dashboards")
}

#[test]
fn dashboards_query_only_declared_metrics_and_show_every_one() {
    let used = dashboard_metric_names(&dashboards_dir());
    let declared: BTreeSet<String> = names::all().map(str::to_owned).collect();
    let unknown: Vec<&String> = used.difference(&declared).collect();
    assert!(
        unknown.is_empty(),
        "dashboards query metrics the code does not declare: {unknown:?}"
    );
    let missing: Vec<&String> = declared.difference(&used).collect();
    assert!(
        missing.is_empty(),
        "declared metrics no dashboard shows: {missing:?}"
    );

    let queries = dashboard_queries(&dashboards_dir());
    let files: Vec<&str> = queries.keys().map(String::as_str).collect();
    assert_eq!(files, ["api.json", "operations.json", "pipeline.json"]);
    // Each dashboard is about its part of the system.
    let of = |file: &str| -> BTreeSet<String> {
        queries[file]
            .iter()
            .flat_map(|q| cacheflow_shared::telemetry::dashboards::promql_metric_names(q))
            .map(|n| cacheflow_shared::telemetry::dashboards::base_metric_name(&n).to_owned())
            .collect()
    };
    for name in [
        names::HTTP_REQUESTS_TOTAL,
        names::HTTP_REQUEST_DURATION_SECONDS,
        names::CACHE_REQUESTS_TOTAL,
        names::SINGLEFLIGHT_COALESCED_TOTAL,
        names::STORE_OPERATION_DURATION_SECONDS,
    ] {
        assert!(of("api.json").contains(name), "api.json lacks {name}");
    }
    for name in names::WORKER.iter().chain([
        &names::OUTBOX_PENDING_EVENTS,
        &names::OUTBOX_PUBLISH_FAILURES_TOTAL,
    ]) {
        assert!(
            of("pipeline.json").contains(*name),
            "pipeline.json lacks {name}"
        );
    }
    for name in names::OPERATIONS {
        assert!(
            of("operations.json").contains(*name),
            "operations.json lacks {name}"
        );
    }
}

/// Every `datasource` object in a dashboard (panels and targets).
fn datasources(value: &Value, found: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "datasource" {
                    found.push(value.clone());
                } else {
                    datasources(value, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| datasources(v, found)),
        _ => {}
    }
}

#[test]
fn dashboards_are_well_formed_and_use_the_provisioned_datasource() {
    let mut uids = BTreeSet::new();
    for file in ["api.json", "pipeline.json", "operations.json"] {
        let text = std::fs::read_to_string(dashboards_dir().join(file)).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        let uid = dashboard["uid"].as_str().expect("a uid");
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} repeated");
        assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut ids = BTreeSet::new();
        let mut with_queries = 0;
        for panel in panels {
            let id = panel["id"].as_u64().expect("a panel id");
            assert!(ids.insert(id), "{file}: panel id {id} repeated");
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
            assert!(x + w <= 24, "{file}: panel {id} is wider than the grid");
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: panel {id} has no query");
            for target in targets {
                assert!(
                    target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{file}: panel {id}"
                );
            }
            with_queries += 1;
        }
        assert!(with_queries >= 3, "{file}: {with_queries} panels");
        let mut found = Vec::new();
        datasources(&dashboard, &mut found);
        for datasource in found {
            let builtin = datasource["uid"] == "-- Grafana --";
            assert!(
                builtin
                    || (datasource["uid"] == "prometheus" && datasource["type"] == "prometheus"),
                "{file}: datasource {datasource}"
            );
        }
    }
}

/// Every dashboard can be narrowed to one instance and one collection: both variables exist,
/// every query filters on the instance, and every query of a metric with a `collection` label on
/// the collection.
#[test]
fn dashboards_filter_by_instance_and_collection() {
    let with_collection: BTreeSet<&str> = DESCRIPTIONS
        .iter()
        .filter(|d| d.labels.contains(&names::label::COLLECTION))
        .map(|d| d.name)
        .collect();
    for (file, queries) in dashboard_queries(&dashboards_dir()) {
        let text = std::fs::read_to_string(dashboards_dir().join(&file)).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        let variables: Vec<&str> = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(variables, ["instance", "collection"], "{file}");
        // A bare selector is a variable's own query (`label_values(<selector>, label)`).
        for query in queries.iter().filter(|q| q.contains('(')) {
            let metrics = cacheflow_shared::telemetry::dashboards::promql_metric_names(query);
            assert!(
                query.contains(r#"instance=~"$instance""#),
                "{file}: {query}"
            );
            let labelled = metrics.iter().any(|n| {
                with_collection
                    .contains(cacheflow_shared::telemetry::dashboards::base_metric_name(n))
            });
            if labelled {
                assert!(
                    query.contains(r#"collection=~"$collection""#),
                    "{file}: {query}"
                );
            }
        }
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool parses recording rules' expressions; Grafana's range variables become durations.
    let mut rules = Vec::new();
    for (file, queries) in dashboard_queries(&dashboards_dir()) {
        for (n, query) in queries.iter().enumerate() {
            let expr = query
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h")
                .replace("$instance", ".*")
                .replace("$collection", ".*");
            assert!(!expr.contains('$'), "{file}: unknown variable in {query}");
            rules.push(serde_json::json!({
                "record": format!("dashboard:{}:{n}", file.trim_end_matches(".json")),
                "expr": expr,
            }));
        }
    }
    assert!(rules.len() > 20, "{} queries", rules.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboards.rules.yml");
    // JSON is YAML.
    let file = serde_json::json!({"groups": [{"name": "dashboards", "rules": rules}]});
    std::fs::write(&path, file.to_string()).unwrap();
    let out = run_promtool(&["check", "rules", path.to_str().unwrap()], None);
    assert!(out.contains("SUCCESS"), "{out}");
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("GET")
}

#[tokio::test]
async fn the_recorder_is_installed_once_and_served_on_metrics() {
    let first = install_recorder();
    let second = install_recorder();
    metrics::counter!(names::OPS_ITEMS_TOTAL, "command" => "verify").increment(2);
    // The same registry behind both handles (render order is not stable: compare one series).
    assert!(first
        .render()
        .contains(r#"cacheflow_ops_items_total{command="verify"}"#));
    assert!(second
        .render()
        .contains(r#"cacheflow_ops_items_total{command="verify"}"#));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_metrics(listener, second, shutdown.clone()));

    let response = get(&format!("http://{addr}/metrics")).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, CONTENT_TYPE_TEXT);
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    let body = response.text().await.unwrap();
    assert!(
        body.contains("# HELP cacheflow_ops_items_total Items an operation command processed."),
        "{body}"
    );
    assert!(
        body.contains("# TYPE cacheflow_ops_items_total counter"),
        "{body}"
    );

    assert_eq!(get(&format!("http://{addr}/")).await.status(), 404);
    assert_eq!(get(&format!("http://{addr}/metrics/x")).await.status(), 404);

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the endpoint stops on shutdown")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .is_err(),
        "still serving after shutdown"
    );
}

/// A sample of every declared metric, labelled with values from its documented sets.
fn record_every_metric() {
    for d in DESCRIPTIONS {
        let labels: Vec<metrics::Label> = d
            .labels
            .iter()
            .map(|&label| {
                let value = match label {
                    names::label::ROUTE => "/v1/{collection}/{id}",
                    names::label::METHOD => "GET",
                    names::label::STATUS_CLASS => names::STATUS_CLASSES[1],
                    names::label::COLLECTION => "places",
                    names::label::RESULT => names::CACHE_RESULTS[0],
                    names::label::OP => names::STORE_OPS[0],
                    names::label::KIND if d.name == names::AUDIT_DRIFT_ENTITIES => {
                        names::DRIFT_KINDS[0]
                    }
                    names::label::KIND => names::STORE_ERROR_KINDS[0],
                    names::label::OUTCOME => "applied",
                    names::label::REASON => names::RETRY_REASONS[0],
                    names::label::COMMAND => names::OPS_COMMANDS[0],
                    other => panic!("no sample value for label {other}"),
                };
                metrics::Label::new(label, value)
            })
            .collect();
        match d.kind {
            MetricKind::Counter => metrics::counter!(d.name, labels).increment(1),
            MetricKind::Gauge => metrics::gauge!(d.name, labels).set(0.5),
            MetricKind::Histogram if d.name == names::WORKER_BATCH_SIZE => {
                metrics::histogram!(d.name, labels).record(8.0);
            }
            MetricKind::Histogram => metrics::histogram!(d.name, labels).record(0.003),
        }
    }
}

#[test]
fn promtool_finds_nothing_to_lint_in_a_scrape_of_every_metric() {
    let handle = install_recorder();
    record_every_metric();
    let scrape = handle.render();
    let families = cacheflow_shared::telemetry::dashboards::exposition_metric_names(&scrape);
    for name in names::all() {
        assert!(families.contains(name), "{name} missing from\n{scrape}");
        assert!(
            scrape.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }
    // Every `_seconds` histogram got the sub-millisecond-to-seconds buckets.
    assert!(
        scrape
            .contains(r#"cacheflow_store_operation_duration_seconds_bucket{op="put",le="0.0001"}"#),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"cacheflow_worker_batch_size_bucket{le="2048"}"#),
        "{scrape}"
    );
    let out = run_promtool(&["check", "metrics"], Some(&scrape));
    assert!(out.trim().is_empty(), "promtool check metrics:\n{out}");
}

#[test]
fn the_architecture_doc_lists_every_metric_with_its_labels() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let section = doc
        .split_once("\n## Metrics\n")
        .expect("a Metrics section")
        .1;
    for d in DESCRIPTIONS {
        let row = section
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", d.name)))
            .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no row for {}", d.name));
        for label in d.labels {
            assert!(
                row.contains(&format!("`{label}`")),
                "{}: label {label} undocumented",
                d.name
            );
        }
    }
}
