"""The push-to-deploy path on PostgreSQL instead of SQLite."""

from __future__ import annotations

import pytest
from gradio_client import Client
from huggingface_hub import HfApi

from tests.e2e.spaces import GRADIO_APP, push, readme

pytestmark = pytest.mark.docker


def test_push_run_private_and_delete_on_postgres(pg_platform, tmp_path):
    api = HfApi(endpoint=pg_platform.url, token=pg_platform.user("pat"))
    api.create_repo("pat/pgdemo", repo_type="space", space_sdk="gradio", private=True)
    push(pg_platform, "pat", "pgdemo", {"app.py": GRADIO_APP, "README.md": readme("gradio")}, tmp_path)
    runtime = pg_platform.wait_stage("pat/pgdemo", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, user="pat")
    assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")
    client = Client(f"{pg_platform.url}/apps/pat/pgdemo/", verbose=False,
                    headers={"Authorization": f"Bearer {pg_platform.user('pat')}"})
    assert client.predict("PG", api_name="/greet") == "Hello PG!"
    with pg_platform.api("quinn") as other:
        assert other.get("/api/spaces/pat/pgdemo").status_code == 404
    api.delete_repo("pat/pgdemo", repo_type="space")
    with pg_platform.api("pat") as owner:
        assert owner.get("/api/spaces/pat/pgdemo").status_code == 404
