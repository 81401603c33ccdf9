#!/usr/bin/env bash
# Stops what infra/scripts/run-local.sh started, by the pid files it left in data/:
# the sync worker, the API, Prometheus, nats-server and redis-server. Servers that were already
# running before (system services, anything without one of our pid files) are left alone.
# Idempotent: stopping twice is fine. DATA_DIR (default data): the runner's DATA_DIR.
set -euo pipefail

cd "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../.."
DATA=${DATA_DIR:-data}
if [ ! -d "$DATA" ]; then
    echo "nothing started by run-local.sh is running (no $DATA directory)"
    exit 0
fi
DATA=$(cd "$DATA" && pwd)

# The pid in a pid file, if that process is alive and runs `name` (guards against reused pids).
live_pid() { # pidfile name
    local pid cmdline
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmdline" == *"$2"* ]] || return 1
    printf '%s' "$pid"
}

stopped=0
stop_pidfile() { # pidfile name
    local pid i
    if pid=$(live_pid "$1" "$2"); then
        printf '==> stopping %s (pid %s)\n' "$2" "$pid"
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            printf '==> %s did not stop within 15 s: killing it\n' "$2"
            kill -9 "$pid" 2>/dev/null || true
        fi
        stopped=$((stopped + 1))
    fi
    rm -f "$1"
}

# Clients first, then the servers they use.
stop_pidfile "$DATA/worker.pid" cacheflow-sync-worker
stop_pidfile "$DATA/api.pid" cacheflow-api
stop_pidfile "$DATA/prometheus.pid" prometheus
stop_pidfile "$DATA/nats.pid" nats-server
stop_pidfile "$DATA/redis.pid" redis-server

if [ "$stopped" -eq 0 ]; then
    echo "nothing started by run-local.sh is running"
else
    echo "stopped $stopped process(es); data is kept in $DATA/"
fi
