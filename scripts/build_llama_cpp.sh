#!/usr/bin/env bash
# Build and install llama-cpp-python into the active Python environment.
#
# PyPI ships no wheel for llama-cpp-python, so pip compiles llama.cpp. The flags
# below skip the multimodal (llava) library and target a portable x86-64 AVX2 CPU
# instead of the build machine's own, which cuts the build to a few minutes and
# gives a binary that runs on any AVX2 machine (CI runners, containers).
#
# Usage: scripts/build_llama_cpp.sh [--with-server]
#   --with-server  also install the extra packages for `python -m llama_cpp.server`
#                  (used by the OpenAI-protocol client tests).
# Environment:
#   LLAMA_CPP_VERSION  version to build (default 0.3.36)
#   BUILD_JOBS         parallel compile jobs (default 2)
#   WHEEL_DIR          when set, build a wheel there first and install from it, so
#                      later runs (or other images) reuse it instead of compiling again
set -euo pipefail

VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
JOBS="${BUILD_JOBS:-2}"
WITH_SERVER=0
for arg in "$@"; do
  case "$arg" in
    --with-server) WITH_SERVER=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-python}"

installed_version() {
  "$PYTHON" - <<'PY' 2>/dev/null || true
import llama_cpp
print(llama_cpp.__version__)
PY
}

install_server_deps() {
  # The [server] extra of llama-cpp-python, pinned to versions known to work together.
  "$PYTHON" -m pip install \
    "uvicorn==0.54.0" "fastapi==0.165.0" "sse-starlette==3.7.0" \
    "starlette-context==0.3.6" "pydantic-settings==2.16.3"
}

if [ "$(installed_version)" = "$VERSION" ]; then
  echo "llama-cpp-python $VERSION already installed; skipping build"
else
  export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
  export CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"
  export MAKEFLAGS="-j$JOBS"
  echo "building llama-cpp-python $VERSION with CMAKE_ARGS=$CMAKE_ARGS (jobs=$JOBS)"
  if [ -n "${WHEEL_DIR:-}" ]; then
    mkdir -p "$WHEEL_DIR"
    if ! ls "$WHEEL_DIR"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
      "$PYTHON" -m pip wheel --no-deps --wheel-dir "$WHEEL_DIR" "llama-cpp-python==$VERSION"
    fi
    # The wheel comes from WHEEL_DIR; its small pure-Python dependencies from the index.
    "$PYTHON" -m pip install --find-links "$WHEEL_DIR" "llama-cpp-python==$VERSION"
  else
    "$PYTHON" -m pip install --no-cache-dir "llama-cpp-python==$VERSION"
  fi
  got="$(installed_version)"
  if [ "$got" != "$VERSION" ]; then
    echo "llama-cpp-python did not install correctly (found '${got:-nothing}')" >&2
    exit 1
  fi
  echo "llama-cpp-python $VERSION installed"
fi

if [ "$WITH_SERVER" = 1 ]; then
  install_server_deps
fi
