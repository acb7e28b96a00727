"""/metrics names every Space, private ones too: it answers the scraper's token or an admin, no one else
(issue 12, item 5)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.models import UsageInterval, utcnow
from tests.security.web_app import Web, make_web, sign_in

SCRAPER = "prometheus-scrape-secret"


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Web:
    web = make_web(tmp_path_factory.mktemp("metrics"), metrics_token=SCRAPER)
    now = utcnow()
    with web.svc.db.session() as s:  # alice's private Space has run for an hour
        s.add(UsageInterval(space_name="alice/secretapp", owner="alice", tier="cpu-basic",
                            started_at=now - timedelta(hours=1), ended_at=now))
    return web


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-secret"},
    {"Authorization": "Bearer sy_not-a-token"},
    {"Authorization": "Basic cHJvbWV0aGV1czp3cm9uZw=="},
])
def test_anonymous_or_wrong_credentials_learn_nothing(web: Web, headers) -> None:
    resp = web.client().get("/metrics", headers=headers)
    assert resp.status_code == 401
    assert "secretapp" not in resp.text and "alice" not in resp.text
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_users_who_are_not_admins_are_refused(web: Web) -> None:
    assert web.api("alice").get("/metrics").status_code == 401
    assert sign_in(web, "bob").get("/metrics").status_code == 401


def test_the_scraper_token_and_admins_read_metrics(web: Web) -> None:
    for client in (web.client(headers={"Authorization": f"Bearer {SCRAPER}"}), web.api("root", role="read"),
                   sign_in(web, "root")):
        resp = client.get("/metrics")
        assert resp.status_code == 200
        assert 'space="alice/secretapp"' in resp.text



def test_the_helm_chart_wires_the_scrape_credential() -> None:
    """The chart keeps the token in a Secret, gives it to the control plane, and to Prometheus (ServiceMonitor
    authorization, or annotations for annotation-based discovery)."""
    helm = pytest.importorskip("helm_python", reason="needs helm-python-sdk")
    import yaml

    chart_dir = Path(__file__).resolve().parents[2] / "helm" / "spaceyard"
    values = {"metrics": {"serviceAnnotations": True,
                          "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    with helm.Chart.load(chart_dir) as chart:
        manifests = chart.render(values, name="sy", namespace="sy", is_install=True)
    objects = [d for p, t in manifests.items() if not p.endswith("NOTES.txt") for d in yaml.safe_load_all(t) if d]

    def named(kind: str, suffix: str) -> dict:
        return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))

    secret = named("Secret", "-metrics")
    assert len(secret["data"]["token"]) >= 40
    name = secret["metadata"]["name"]
    deployment = named("Deployment", "-controlplane")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SPACEYARD_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "token"}
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics" and endpoint["authorization"]["credentials"] == {"name": name, "key": "token"}
    service = named("Service", "-controlplane")
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert all(service["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
