#!/usr/bin/env bash
# Runs cacheflow locally on a fresh Debian/Ubuntu machine, in one command:
#   - installs redis-server, nats-server and curl when missing (install-deps.sh --run);
#   - starts redis-server and nats-server (JetStream) unless something already listens on
#     their ports;
#   - builds and (re)starts cacheflow-api and cacheflow-sync-worker in the background;
#   - seeds 1,000 demo places on the first run, and waits until the worker projected them
#     into Redis (or says that it did not);
#   - starts Prometheus when it is installed and infra/prometheus.local.yml exists.
# Everything it creates lives under data/ (logs in data/logs, pid files in data/).
# Idempotent: run it again to rebuild and restart the API and the worker.
# Stop with infra/scripts/stop-local.sh.
#
# Settings (environment, with defaults):
#   REDIS_URL=redis://127.0.0.1:6379  NATS_URL=nats://127.0.0.1:4222  API_ADDR=127.0.0.1:8080
#   API_METRICS_ADDR=127.0.0.1:9464   WORKER_METRICS_ADDR=127.0.0.1:9465
#   STORE_URL, PIPELINE_CONFIG, CACHEFLOW_*: passed through to the binaries.
#   API_KEYS: unset by default, so the local API is open (it logs a warning saying so); when
#                                     set, export CACHEFLOW_API_KEY=<a writer key> for the seeding
#                                     (the servers never read CACHEFLOW_API_KEY as a setting).
#   SEED_COUNT=1000                   places seeded on the first run
#   SEED_WAIT_SECS=120                longest wait for the worker to project the seeded places
#   PROMETHEUS_ADDR=127.0.0.1:9090    where Prometheus listens; `off`: do not start it
#   DATA_DIR=data                     where everything the runner creates lives (stop-local.sh
#                                     takes the same variable)
#   BIN_DIR: unset, so the binaries are built into target/release; set to a directory that
#                                     holds them (e.g. target/debug) to use those, unbuilt.
set -euo pipefail

cd "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../.."
ROOT=$PWD

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
export API_ADDR=${API_ADDR:-127.0.0.1:8080}
API_METRICS_ADDR=${API_METRICS_ADDR:-${METRICS_ADDR:-127.0.0.1:9464}}
WORKER_METRICS_ADDR=${WORKER_METRICS_ADDR:-127.0.0.1:9465}
# METRICS_ADDR differs per binary: each gets its own below.
unset METRICS_ADDR
SEED_COUNT=${SEED_COUNT:-1000}
SEED_WAIT_SECS=${SEED_WAIT_SECS:-120}
PROMETHEUS_ADDR=${PROMETHEUS_ADDR:-127.0.0.1:9090}

DATA=$(mkdir -p "${DATA_DIR:-data}" && cd "${DATA_DIR:-data}" && pwd)
# The embedded store lives with the rest of the runner's data.
export STORE_URL=${STORE_URL:-sqlite://$DATA/cacheflow.db}
LOGS=$DATA/logs
mkdir -p "$LOGS" "$DATA/redis" "$DATA/nats"

say() { printf '==> %s\n' "$*"; }
die() { printf 'run-local: %s\n' "$*" >&2; exit 1; }

# Which binaries may live in sbin directories a non-root PATH lacks.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# host and port of a URL like scheme://[user[:pass]@]host:port[/path].
url_host() { local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; printf '%s' "${rest%:*}"; }
url_port() { local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; printf '%s' "${rest##*:}"; }
addr_host() { printf '%s' "${1%:*}"; }
addr_port() { printf '%s' "${1##*:}"; }
is_local() { case "$1" in 127.0.0.1 | localhost | ::1 | "[::1]") return 0 ;; *) return 1 ;; esac; }

# Whether something accepts TCP connections on host:port.
listening() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

wait_listening() { # host port what seconds logfile
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        listening "$1" "$2" && return 0
        sleep 0.1
    done
    [ -f "$5" ] && tail -n 30 "$5" >&2
    die "$3 is not listening on $1:$2 after $4 s (log: $5)"
}

# The pid in a pid file, if that process is alive and runs `name` (guards against reused pids).
live_pid() { # pidfile name
    local pid
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmdline" == *"$2"* ]] || return 1
    printf '%s' "$pid"
}

stop_pidfile() { # pidfile name
    local pid i
    if pid=$(live_pid "$1" "$2"); then
        say "stopping the earlier $2 (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# ------------------------------------------------------------------------------------------------
say "installing missing system packages"
bash infra/scripts/install-deps.sh --run
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup) first"

# ------------------------------------------------------------------------------------------------
redis_host=$(url_host "$REDIS_URL")
redis_port=$(url_port "$REDIS_URL")
if listening "$redis_host" "$redis_port"; then
    say "redis: already listening on $redis_host:$redis_port"
elif is_local "$redis_host"; then
    say "redis: starting redis-server on 127.0.0.1:$redis_port (data/redis, log data/logs/redis.log)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" \
        --dir "$DATA/redis" --logfile "$LOGS/redis.log" --pidfile "$DATA/redis.pid" \
        --appendonly no
    wait_listening 127.0.0.1 "$redis_port" redis-server 15 "$LOGS/redis.log"
else
    die "redis at $REDIS_URL does not answer (only local servers are started here)"
fi

nats_host=$(url_host "$NATS_URL")
nats_port=$(url_port "$NATS_URL")
if listening "$nats_host" "$nats_port"; then
    say "nats: already listening on $nats_host:$nats_port"
elif is_local "$nats_host"; then
    say "nats: starting nats-server -js on 127.0.0.1:$nats_port (store data/nats, log data/logs/nats.log)"
    nohup nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$DATA/nats" \
        >>"$LOGS/nats.log" 2>&1 </dev/null &
    echo $! >"$DATA/nats.pid"
    wait_listening 127.0.0.1 "$nats_port" nats-server 15 "$LOGS/nats.log"
else
    die "nats at $NATS_URL does not answer (only local servers are started here)"
fi

# ------------------------------------------------------------------------------------------------
if [ -n "${BIN_DIR:-}" ]; then
    BIN=$(cd "$BIN_DIR" && pwd)
    for binary in cacheflow-api cacheflow-sync-worker cacheflow-loadtests; do
        [ -x "$BIN/$binary" ] || die "BIN_DIR=$BIN_DIR has no $binary: build it, or unset BIN_DIR"
    done
    say "using the binaries in $BIN"
else
    say "building release binaries"
    cargo build --release -p cacheflow-api -p cacheflow-sync-worker -p cacheflow-loadtests
    BIN=$ROOT/target/release
fi

stop_pidfile "$DATA/api.pid" cacheflow-api
stop_pidfile "$DATA/worker.pid" cacheflow-sync-worker

api_host=$(addr_host "$API_ADDR")
api_port=$(addr_port "$API_ADDR")
if listening "$api_host" "$api_port"; then
    die "something else already listens on $API_ADDR: stop it or set API_ADDR"
fi

say "api: starting $BIN/cacheflow-api on $API_ADDR (log $LOGS/api.log)"
METRICS_ADDR=$API_METRICS_ADDR nohup "$BIN/cacheflow-api" >>"$LOGS/api.log" 2>&1 </dev/null &
echo $! >"$DATA/api.pid"

say "worker: starting $BIN/cacheflow-sync-worker (log $LOGS/worker.log)"
METRICS_ADDR=$WORKER_METRICS_ADDR nohup "$BIN/cacheflow-sync-worker" \
    >>"$LOGS/worker.log" 2>&1 </dev/null &
echo $! >"$DATA/worker.pid"

say "waiting for http://$API_ADDR/healthz"
api_pid=$(cat "$DATA/api.pid")
deadline=$((SECONDS + 30))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$API_ADDR/healthz" || true)" = 200 ]; do
    if ! kill -0 "$api_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "run-local: the API did not become healthy; last lines of $LOGS/api.log:" >&2
        tail -n 40 "$LOGS/api.log" >&2 || true
        exit 1
    fi
    sleep 0.5
done
say "api: healthy"

# The worker's readiness (consumer bound, NATS and Redis answer, not stalled) on its metrics
# address. Not fatal: the API works without it, but nothing reaches Redis until it is ready.
say "waiting for the worker: http://$WORKER_METRICS_ADDR/readyz"
worker_pid=$(cat "$DATA/worker.pid")
deadline=$((SECONDS + 30))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$WORKER_METRICS_ADDR/readyz" || true)" = 200 ]; do
    if ! kill -0 "$worker_pid" 2>/dev/null; then
        printf 'run-local: the sync worker exited; last lines of %s/worker.log:\n' "$LOGS" >&2
        tail -n 40 "$LOGS/worker.log" >&2 || true
        die "the sync worker is not running: nothing will reach Redis"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        printf 'run-local: WARNING: the sync worker is not ready after 30 s; it says: %s\n' \
            "$(curl -s --max-time 2 "http://$WORKER_METRICS_ADDR/readyz" || echo 'no answer')" >&2
        break
    fi
    sleep 0.5
done

# ------------------------------------------------------------------------------------------------
if [ ! -e "$DATA/.seeded" ]; then
    say "seeding $SEED_COUNT demo places (first run only), then waiting until the worker projected them"
    # --redis: the seeding also waits (up to SEED_WAIT_SECS) until every written version is in
    # Redis, so a worker that applies nothing is reported here rather than found out later.
    if ! "$BIN/cacheflow-loadtests" seed --api "http://$API_ADDR" --count "$SEED_COUNT" \
        --redis "$REDIS_URL" --key-prefix "${CACHEFLOW_WORKER__KEY_PREFIX:-}" \
        --wait-secs "$SEED_WAIT_SECS"; then
        printf 'run-local: the seeding did not complete (the line above says how): writes failed,\n' >&2
        printf '  or the worker did NOT project every seeded place into Redis, so near and top\n' >&2
        printf '  lists miss them. Check the worker: tail %s/worker.log;\n' "$LOGS" >&2
        printf '  curl -s http://%s/metrics | grep cacheflow_worker\n' "$WORKER_METRICS_ADDR" >&2
        die "seeding incomplete; the API and the worker keep running; run again to retry"
    fi
    touch "$DATA/.seeded"
else
    say "demo places already seeded (delete $DATA/.seeded to seed again)"
fi

prometheus_started=0
if [ "$PROMETHEUS_ADDR" != off ] && command -v prometheus >/dev/null 2>&1 &&
    [ -f infra/prometheus.local.yml ]; then
    if live_pid "$DATA/prometheus.pid" prometheus >/dev/null; then
        prometheus_started=1
        say "prometheus: already running (started by an earlier run)"
    elif ! listening "$(addr_host "$PROMETHEUS_ADDR")" "$(addr_port "$PROMETHEUS_ADDR")"; then
        say "prometheus: starting on $PROMETHEUS_ADDR (log $LOGS/prometheus.log)"
        mkdir -p "$DATA/prometheus"
        nohup prometheus --config.file=infra/prometheus.local.yml --storage.tsdb.path="$DATA/prometheus" \
            --web.listen-address="$PROMETHEUS_ADDR" >>"$LOGS/prometheus.log" 2>&1 </dev/null &
        echo $! >"$DATA/prometheus.pid"
        prometheus_started=1
    fi
fi

# ------------------------------------------------------------------------------------------------
cat <<EOT

cacheflow is running.
  API          http://$API_ADDR
  liveness     http://$API_ADDR/healthz
  readiness    http://$API_ADDR/readyz
  API metrics  http://$API_METRICS_ADDR/metrics
  worker       http://$WORKER_METRICS_ADDR/metrics
EOT
if [ "$prometheus_started" = 1 ]; then
    echo "  Prometheus   http://$PROMETHEUS_ADDR"
fi
# Writes need a writer key once API_KEYS is set: the commands name the variable, never the key.
auth=
if [ -n "${API_KEYS:-}" ]; then
    auth=" -H \"Authorization: Bearer \$CACHEFLOW_API_KEY\""
fi
cat <<EOT
  logs         $LOGS/   (stop everything with infra/scripts/stop-local.sh)

Try:
  curl -s $API_ADDR/v1/collections/places
  curl -s $API_ADDR/v1/places/place-0001
  curl -s '$API_ADDR/v1/places/near/nearby?lon=-9.1393&lat=38.7223&radius_m=2000&limit=5'
  curl -s '$API_ADDR/v1/places/top/rating?limit=5&offset=0'
  curl -s '$API_ADDR/v1/places/top/rating_by_category?category=cafe&limit=5'
  curl -s $API_ADDR/v1/places/place-0001/fields
  curl -s -X PUT $API_ADDR/v1/places/my-cafe$auth -H 'Content-Type: application/json' \\
       -d '{"name":"My Cafe","category":"cafe","rating":4.5,"price":2,"location":{"type":"Point","coordinates":[-9.1393,38.7223]}}'
  curl -s -X PATCH $API_ADDR/v1/places/my-cafe$auth -H 'Content-Type: application/merge-patch+json' \\
       -d '{"rating":4.8}'
  curl -s -X DELETE -i $API_ADDR/v1/places/my-cafe$auth
  curl -s $API_ADDR/readyz
EOT
