#!/bin/sh
# Build every Spaceyard base image (Python base, then gradio/streamlit/static SDK bases) with progress
# output. Settings come from SPACEYARD_* variables (see builder/settings.py); extra args pass through,
# e.g. `runtime-images/build.sh --sdk gradio --gradio-version 5.49.1`.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" -m builder.baseimages "$@"
