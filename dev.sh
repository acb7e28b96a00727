#!/usr/bin/env bash
# The two commands:
#   ./dev.sh up     install what is missing, then start the whole platform and print the dashboard URL
#   ./dev.sh test   install what is missing (test extras too), then run every check and test
set -euo pipefail
cd "$(dirname "$0")"

case "${1:-}" in
  up)
    scripts/setup.sh
    exec .venv/bin/spaceyard up
    ;;
  test)
    shift
    scripts/setup.sh --test
    .venv/bin/python -c "from controlplane.launcher import ensure_docker; from pathlib import Path; ensure_docker(Path('.spaceyard/logs'))"
    SPACEYARD_BUILD_CA_BUNDLE="${SPACEYARD_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" \
      .venv/bin/python -m builder.baseimages
    .venv/bin/ruff check .
    .venv/bin/lint-imports
    exec .venv/bin/pytest -ra "$@"
    ;;
  *)
    echo "usage: ./dev.sh up | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
