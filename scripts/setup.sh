#!/usr/bin/env bash
# Installs what Spaceyard needs on a Debian/Ubuntu host: the Docker engine, Redis, git (with git-lfs: the tests and
# operators mirroring Hub repos push LFS files; the server itself does not need it), debootstrap (base images without
# a registry), and a Python virtualenv in .venv with the project.
# --test adds what the test suite uses: Chromium (dashboard tests), PostgreSQL, the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker.io redis-server git git-lfs debootstrap ca-certificates python3-venv haproxy)
extras=""
if [[ "${1:-}" == "--test" ]]; then
  packages+=(chromium postgresql wrk)
  extras="[test]"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian starts packaged Redis, PostgreSQL and HAProxy (no listener); Spaceyard runs private instances of its own.
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".${extras}"
echo "setup: ready (.venv)"
