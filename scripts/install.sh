#!/usr/bin/env bash
# Create .venv and install pico_nb into it with the given extras (e.g. "test,hub").
# Sourced by start.sh and test.sh; on a fresh Debian machine it also adds python3-venv.
set -euo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root to run: $*" >&2; return 1; fi
}

apt_install() {
  # Install Debian packages that are missing; apt-get update first, as a fresh machine needs.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

PROXY_PACKAGE="configurable-http-proxy@^5.3"  # JupyterHub's production proxy (Node)
PROXY_DIR=".venv/lib/node"  # project-local: `pico-nb hub` finds it beside the venv's Python

install_proxy() {
  # The hub's streaming proxy from npm, into the venv; Node and npm from Debian if missing.
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  [ -x "$PROXY_DIR/node_modules/.bin/configurable-http-proxy" ] && return 0
  mkdir -p "$PROXY_DIR"
  npm install --silent --no-audit --no-fund --prefix "$PROXY_DIR" "$PROXY_PACKAGE" >/dev/null
}

install_venv() {
  local extras="${1:-}"
  local python="${PYTHON:-python3}"
  if ! "$python" -c "import venv, ensurepip" >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  if [ -n "$extras" ]; then
    .venv/bin/python -m pip install -q -e ".[$extras]"
  else
    .venv/bin/python -m pip install -q -e .
  fi
  case ",$extras," in *,hub,*) install_proxy ;; esac
}
