"""Which token `POST /api/metering/gpu-samples` accepts: the configured one (the chart's Secret), else the derived one.

The real agent posts into the control plane's ASGI app (TestClient is an httpx.Client); no lifespan, so no Redis.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from controlplane.app import create_app
from controlplane.core.config import Settings
from controlplane.core.db import migrate
from controlplane.core.security import service_token
from controlplane.gpu_agent.agent import EXIT_OK, EXIT_POST_FAILED, Agent
from controlplane.gpu_agent.nvml import RecordedReader
from controlplane.models import GpuSample

A10G_NODE = Path(__file__).parent / "data" / "a10g-node.json"
SECRET_KEY = "test-secret"
DERIVED = service_token(SECRET_KEY, "gpu-agent")


def post_once(tmp_path: Path, token: str, **settings) -> tuple[int, int]:
    """(agent exit status, samples stored) after one agent cycle with `token` against a fresh control plane."""
    config = Settings(data_dir=tmp_path / "data", secret_key=SECRET_KEY, **settings)
    app = create_app(config)
    migrate(config.sqlalchemy_url)
    client = TestClient(app)
    agent = Agent(RecordedReader(A10G_NODE), lambda gpus: {}, client, url=str(client.base_url), token=token, node="n1")
    status = agent.run(cycles=1)
    with app.state.services.db.session() as s:
        return status, s.scalar(select(func.count()).select_from(GpuSample))


def test_without_a_configured_token_the_derived_one_is_accepted(tmp_path):
    assert post_once(tmp_path, DERIVED) == (EXIT_OK, 1)
    assert post_once(tmp_path / "again", "chart-token") == (EXIT_POST_FAILED, 0)


def test_a_configured_token_replaces_the_derived_one(tmp_path):
    assert post_once(tmp_path, "chart-token", gpu_agent_token="chart-token") == (EXIT_OK, 1)
    assert post_once(tmp_path / "again", DERIVED, gpu_agent_token="chart-token") == (EXIT_POST_FAILED, 0)
