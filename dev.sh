#!/usr/bin/env bash
# The two commands:
#   ./dev.sh up     install what is missing, then start the whole platform and print the dashboard URL
#   ./dev.sh test   install what is missing (test extras too), then run every check and test
set -euo pipefail
cd "$(dirname "$0")"

# tests/k8s and the chart tests run against the cluster KUBECONFIG names. Without one, the local cluster of
# ../shared/k8s (beside the checkout, as in CI) is started for the tests and stopped after them, also when they
# fail; a cluster that already ran is left running. Elsewhere those tests skip and say why.
start_test_cluster() {
  local k8s=../shared/k8s state=${K8S_STATE:-/var/lib/spaceyard-k8s}
  if [[ -n "${KUBECONFIG:-}" ]]; then
    echo "Kubernetes tests: the cluster of KUBECONFIG=$KUBECONFIG"
  elif [[ ! -f $k8s/start.sh ]]; then
    echo "Kubernetes tests: skipped (no KUBECONFIG and no $k8s/start.sh)"
  elif [[ $(id -u) != 0 ]]; then
    echo "Kubernetes tests: skipped (no KUBECONFIG; $k8s/start.sh needs root)"
  else
    local pid=$state/run/kube-apiserver.pid
    if ! { [[ -f $pid ]] && kill -0 "$(cat "$pid")" 2>/dev/null; }; then
      trap "bash $k8s/stop.sh || echo 'stopping the test cluster failed' >&2" EXIT
    fi
    echo "Kubernetes tests: starting the local cluster ($k8s/start.sh --registry)"
    # --registry: a plain-HTTP registry on 127.0.0.1:5000 that Docker pushes to and the node pulls from, where
    # tests/helm/test_helm_e2e.py puts the platform's images and the in-cluster builder the Space images.
    # bash: a copied shared/ may have lost the execute bits. Under load start.sh can lose a race: the kubelet
    # exits at once when containerd's CRI is not serving yet ("server is not initialized yet"), and a node1 still
    # Ready from an earlier run hides that. A second start brings up what is not running.
    local kubelet=$state/run/kubelet.pid
    if ! bash "$k8s/start.sh" --registry || ! { [[ -f $kubelet ]] && kill -0 "$(cat "$kubelet")" 2>/dev/null; }; then
      echo "Kubernetes tests: the cluster did not come up whole (no kubelet); starting it again"
      bash "$k8s/start.sh" --registry
    fi
    export KUBECONFIG=$state/admin.kubeconfig
    # Preloaded on its node: a static HTTP server on 8080 as uid 1000, so Space pods get to "running".
    export SPACEYARD_K8S_TEST_IMAGE=${SPACEYARD_K8S_TEST_IMAGE:-localhost/spaceyard-hello:1}
    # And python3 (the base image built above, ~5 s to load): an app without a SIGTERM handler, for the stop test.
    if docker save spaceyard/base:py3.11 | ctr -n k8s.io -a "$state/containerd/containerd.sock" images import - >/dev/null
    then
      export SPACEYARD_K8S_TEST_PYTHON_IMAGE=spaceyard/base:py3.11
    fi
  fi
}

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
    start_test_cluster
    # No exec: the EXIT trap that stops the cluster must still run when pytest fails.
    .venv/bin/pytest -ra "$@"
    ;;
  *)
    echo "usage: ./dev.sh up | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
