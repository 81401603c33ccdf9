#!/usr/bin/env bash
# The one test command, locally and in CI:
#   1. install the system packages the tests need (redis-server, nats-server, curl, promtool,
#      chromium and chromium-driver for the console's browser test)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo build --workspace --bins (the fault-injection suite, `cargo test -p cacheflow-api
#      --test faults`, runs the sync worker's binary, which building the api's tests does not build)
#   5. cargo test --workspace
# Stops at the first failing step with a non-zero exit code. The tests start their own
# redis-server and nats-server processes on free ports (crate cacheflow-testkit).
set -euo pipefail

cd "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../.."

# One-shot builds gain nothing from incremental compilation, whose caches take gigabytes
# in target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# A full disk shows up as a linker crash deep in the build; say so up front instead.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((6 * 1024 * 1024)) ]; then
    printf 'warning: only %d MiB free on the disk holding %s; the build needs about 6 GiB\n' \
        "$((free_kib / 1024))" "$PWD" >&2
fi

started=$SECONDS
step_number=0
step_count=5

step() {
    local name=$1
    shift
    step_number=$((step_number + 1))
    local step_started=$SECONDS
    printf '\n==== [%d/%d] %s ====\n' "$step_number" "$step_count" "$name"
    printf '$ %s\n' "$*"
    local rc=0
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\n==== FAILED: %s (exit %d, after %ds) ====\n' "$name" "$rc" "$((SECONDS - step_started))" >&2
        exit "$rc"
    fi
    printf '==== done: %s (%ds) ====\n' "$name" "$((SECONDS - step_started))"
}

step "install dependencies" bash infra/scripts/install-deps.sh --test
step "format" cargo fmt --all -- --check
step "lint" cargo clippy --workspace --all-targets -- -D warnings
step "binaries" cargo build --workspace --bins
step "tests" cargo test --workspace

printf '\n==== all checks passed in %ds ====\n' "$((SECONDS - started))"
