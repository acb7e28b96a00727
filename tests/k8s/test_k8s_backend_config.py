"""KubernetesBackend's configuration: from the control plane's settings and a kubeconfig (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import yaml

from controlplane.core.config import Settings
from controlplane.runtime.kubernetes_backend import KubernetesBackend


def kubeconfig(path: Path) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        runtime="kubernetes",
        data_dir=tmp_path,
        apps_domain="apps.example.com",
        spaces_namespace="my-spaces",
        kubeconfig=kubeconfig(tmp_path / "config"),
        ingress_class="nginx",
        apps_tls_secret="apps-tls",
        image_pull_secret="pull",
        k8s_request_ratio=0.5,
    )
    backend = KubernetesBackend.from_settings(settings)
    assert backend.namespace == "my-spaces"
    options = backend.options
    assert options.apps_domain == "apps.example.com"
    assert (options.ingress_class, options.tls_secret, options.image_pull_secret) == ("nginx", "apps-tls", "pull")
    assert options.ingress is False  # the chart's wildcard Ingress sends app hosts to the router
    assert options.request_ratio == 0.5
    assert backend.api.configuration.host == "https://127.0.0.1:6443"
    assert backend.catalog.pool_for("t4-small").name == "t4"
