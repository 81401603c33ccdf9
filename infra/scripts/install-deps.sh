#!/usr/bin/env bash
# Installs the system packages cacheflow needs, and only those that are missing.
#
#   infra/scripts/install-deps.sh          redis-server (+ redis-cli, redis-benchmark), nats-server
#   infra/scripts/install-deps.sh --run    ... and curl and openssl (what run-local.sh and the README use)
#   infra/scripts/install-deps.sh --test   ... and curl, openssl, prometheus (promtool), chromium
#                                          and chromium-driver (the console's browser tests)
#   infra/scripts/install-deps.sh --bench  ... and curl, jq and wrk (what bench.sh uses)
#
# Debian/Ubuntu (apt-get). Runs `apt-get update` once, and only when something is missing.
# Works as root, or through sudo when not root. Idempotent: a second run installs nothing.
# It never starts services itself (installing redis-server may start the distribution's service
# on systems with an init; that is harmless: the tests use their own servers on free ports and
# run-local.sh checks ports before starting anything).
# Tests run with plain `cargo test`: cargo-nextest is not needed and is not installed.
set -euo pipefail

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

with_curl=0
with_prometheus=0
with_test=0
with_bench=0
for arg in "$@"; do
    case "$arg" in
        --test) with_curl=1; with_prometheus=1; with_test=1 ;;
        --run) with_curl=1 ;;
        --bench) with_curl=1; with_bench=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install-deps.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

# `command -v` plus the sbin directories a non-root PATH often lacks (Debian puts nats-server in
# /usr/sbin).
have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local dir
    for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
        [ -x "$dir/$1" ] && return 0
    done
    return 1
}

# binary:package pairs.
wanted=(
    redis-server:redis-server
    redis-cli:redis-tools
    redis-benchmark:redis-tools
    nats-server:nats-server
)
if [ "$with_curl" = 1 ]; then
    # openssl: the README's protected start makes a key with `openssl rand`.
    wanted+=(curl:curl openssl:openssl)
fi
if [ "$with_bench" = 1 ]; then
    wanted+=(jq:jq wrk:wrk)
fi
if [ "$with_prometheus" = 1 ]; then
    wanted+=(promtool:prometheus)
fi
if [ "$with_test" = 1 ]; then
    wanted+=(chromium:chromium chromedriver:chromium-driver)
fi

missing=()
for pair in "${wanted[@]}"; do
    binary=${pair%%:*}
    package=${pair#*:}
    if ! have "$binary"; then
        case " ${missing[*]-} " in
            *" $package "*) ;;
            *) missing+=("$package") ;;
        esac
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: everything is already installed"
else
    if ! have apt-get; then
        echo "install-deps: missing packages (${missing[*]}) and no apt-get here: install them by hand" >&2
        exit 1
    fi
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if have sudo; then
            sudo=(sudo)
        else
            echo "install-deps: not root and no sudo: cannot install ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "install-deps: installing ${missing[*]}"
    apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
        --no-install-recommends "${missing[@]}"
    for pair in "${wanted[@]}"; do
        binary=${pair%%:*}
        if ! have "$binary"; then
            echo "install-deps: $binary is still missing after installing ${pair#*:}" >&2
            exit 1
        fi
    done
fi

if [ "$with_test" = 1 ]; then
    # The checks in test.sh need rustfmt and clippy; they ship with the usual toolchains.
    for component in fmt clippy; do
        if ! cargo "$component" --version >/dev/null 2>&1; then
            if have rustup; then
                rustup component add "$([ "$component" = fmt ] && echo rustfmt || echo clippy)"
            else
                echo "install-deps: \`cargo $component\` is not available: add the rust toolchain component" >&2
                exit 1
            fi
        fi
    done
fi
