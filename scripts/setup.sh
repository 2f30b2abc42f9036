#!/usr/bin/env bash
# Sets up everything the gateway, its workers and the tests need, idempotently:
# system libraries (Linux), the virtualenv in .venv with the pinned packages,
# and the offline demo models. Re-running it is cheap: each step is skipped
# when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv

# --- system libraries (Linux only) ------------------------------------------
# mlx[cpu] ships the netlib reference BLAS; OpenBLAS loaded ahead of it makes
# matmuls ~50x faster (see workers/blas.py). espeak-ng: offline English G2P for
# Kokoro and test speech; ffmpeg: audio decoding for Whisper and audio encoding;
# chromium: the browser test of the Avatar Debate page.
if [ "$(uname -s)" = "Linux" ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  for pkg in libopenblas0-pthread espeak-ng ffmpeg chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
      echo "setup: installing ${need[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      echo "setup: warning: ${need[*]} missing and not root; MLX will use its slow reference BLAS" >&2
    fi
  fi
fi

# --- python environment -------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat pyproject.toml requirements/*.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing pinned packages"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c requirements/constraints.txt -e ".[dev]"
  # Packages whose declared dependencies would pull torch or a CUDA-only MLX:
  # installed alone; what they import is pinned in pyproject.toml.
  "$VENV/bin/python" -m pip install -q --no-deps -c requirements/constraints.txt \
    -r requirements/no-deps.txt
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

# --- JavaScript test clients (tests/js: the OpenAI JS SDK, a headless browser) ---
if command -v npm >/dev/null 2>&1; then
  js_stamp="tests/js/node_modules/.installed-$(cat tests/js/package-lock.json | sha1sum | cut -c1-12)"
  if [ ! -f "$js_stamp" ]; then
    echo "setup: installing tests/js packages"
    npm ci --prefix tests/js --no-audit --no-fund --silent
    touch "$js_stamp"
  fi
else
  echo "setup: warning: npm not found; the JS client tests will fail" >&2
fi

# --- offline demo models ------------------------------------------------------
"$VENV/bin/python" -m demos.llm --out models
"$VENV/bin/python" -m demos.vlm --out models
"$VENV/bin/python" -m demos.whisper --out models
"$VENV/bin/python" -m demos.kokoro --out models
"$VENV/bin/python" -m demos.flux --out models
