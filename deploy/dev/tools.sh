#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, idempotently, into the checkout:
#   python   .venv/ with the package installed editable (this builds the tss-lib Go shim and
#            the protobuf code) and its test extras
#   run      + the local dev chains `make run` starts: btcd/btcctl (go install, pinned) and
#            Anvil (npm, pinned) into .tools/
#   test     + solc (npm, pinned) into .tools/, PostgreSQL and Chromium from Debian's packages
# Usage: deploy/dev/tools.sh python|run|test
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=$ROOT/.tools
BTCD_VERSION=v0.26.0        # segwit + taproot active from the first regtest blocks
ANVIL_VERSION=1.7.1         # @foundry-rs/anvil-linux-amd64
SOLC_VERSION=0.8.37         # solc-js, compiles the test ERC-20 at test time
PY=${PYTHON:-python3}

log() { printf '[tools] %s\n' "$*" >&2; }

need_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_env() {
  command -v go >/dev/null || { log "Go is required (it builds the tss-lib shim)"; exit 1; }
  # gcc + OpenSSL headers build the proof-of-reserves hashing helper (proofs/native_build.py)
  need_apt gcc libssl-dev
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    $PY -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
  log "pip install -e .[test] (builds the tss-lib shim with go build -buildmode=c-shared)"
  .venv/bin/python -m pip install -q -e '.[test]'
}

chain_tools() {
  mkdir -p "$TOOLS/bin"
  if [ ! -x "$TOOLS/bin/btcd" ] || [ ! -x "$TOOLS/bin/btcctl" ]; then
    log "go install btcd@$BTCD_VERSION"
    GOBIN=$TOOLS/bin GOFLAGS=-mod=mod go install \
      "github.com/btcsuite/btcd@$BTCD_VERSION" "github.com/btcsuite/btcd/cmd/btcctl@$BTCD_VERSION"
  fi
  if [ ! -x "$TOOLS/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ]; then
    command -v npm >/dev/null || { log "Node.js (npm) is required: it installs Anvil"; exit 1; }
    log "npm install anvil@$ANVIL_VERSION"
    mkdir -p "$TOOLS/npm"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" \
      "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" >/dev/null
  fi
}

test_tools() {
  chain_tools
  if [ ! -d "$TOOLS/npm/node_modules/solc" ]; then
    log "npm install solc@$SOLC_VERSION"
    mkdir -p "$TOOLS/npm"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" \
      "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" "solc@$SOLC_VERSION" >/dev/null
  fi
  need_apt postgresql chromium
}

case "${1:-}" in
  python) python_env ;;
  run) python_env; chain_tools ;;
  test) python_env; test_tools ;;
  *) echo "usage: $0 python|run|test" >&2; exit 2 ;;
esac
