"""The GPU agent: recorded NVML readings, posting to a real loopback HTTP server, backoff, the CLI, NVML itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from controlplane.gpu_agent.agent import SAMPLES_PATH, Agent, main
from controlplane.gpu_agent.nvml import (
    NO_DRIVER_MESSAGE,
    GpuReading,
    NvmlReader,
    NvmlUnavailable,
    RecordedReader,
    record,
)
from controlplane.metering.samples import store_samples
from controlplane.models import GpuSample

DATA = Path(__file__).parent / "data"
H100_NODE = DATA / "h100x2-node.json"
A10G_NODE = DATA / "a10g-node.json"
H100_0 = "GPU-8f6f4a2c-1b7e-9d3a-5c0e-2a4b6c8d0e1f"


class ControlPlaneStub:
    """A real HTTP server on loopback that records what the agent posts and answers scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                self.send_response(stub.statuses.pop(0) if stub.statuses else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def control_plane() -> Iterator[ControlPlaneStub]:
    stub = ControlPlaneStub([])
    yield stub
    stub.close()


class Ticker:
    """Injected clock and sleep: each sample is 15 s after the previous one; sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.t = datetime(2024, 6, 1, 12, tzinfo=UTC)
        self.slept: list[float] = []

    def now(self) -> datetime:
        self.t += timedelta(seconds=15)
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def make_agent(url: str, client: httpx.Client, ticker: Ticker, reader=None, mapper=None, **kw) -> Agent:
    return Agent(
        reader or RecordedReader(H100_NODE),
        mapper or (lambda gpus: {H100_0: "alice/llm"}),
        client,
        url=url,
        token="agent-secret",
        node="gpu-node-1",
        now=ticker.now,
        sleep=ticker.sleep,
        **kw,
    )


def test_recorded_reader_replays_frames_and_wraps_around():
    reader = RecordedReader(A10G_NODE)
    first, second, third = reader.devices(), reader.devices(), reader.devices()
    assert [g.model for g in first] == ["NVIDIA A10G"]
    assert (first[0].utilization_pct, second[0].utilization_pct) == (0.0, 63.0)
    assert third == first
    assert second[0].memory_total_bytes == 23028 * 1024 * 1024


def test_a_recording_round_trips(tmp_path):
    recording = record(RecordedReader(H100_NODE), frames=3)
    path = tmp_path / "again.json"
    path.write_text(json.dumps(recording))
    assert recording == json.loads(H100_NODE.read_text())
    assert RecordedReader(path).devices()[0].model == "NVIDIA H100 80GB HBM3"


def test_agent_posts_samples_with_its_token_and_the_control_plane_stores_them(control_plane, session):
    ticker = Ticker()
    with httpx.Client(timeout=5) as client:
        assert make_agent(control_plane.url, client, ticker).run(cycles=1) == 0
    [req] = control_plane.requests
    assert req["path"] == SAMPLES_PATH
    assert req["headers"]["Authorization"] == "Bearer agent-secret"
    body = req["json"]
    assert (body["node"], body["sampled_at"]) == ("gpu-node-1", "2024-06-01T12:00:15+00:00")
    assert [(g["index"], g["model"], g["space"]) for g in body["gpus"]] == [
        (0, "NVIDIA H100 80GB HBM3", "alice/llm"),
        (1, "NVIDIA H100 80GB HBM3", None),
    ]
    assert store_samples(session, body) == 2  # the agent's body is exactly what the route accepts
    assert session.scalars(select(GpuSample.space_name).order_by(GpuSample.id)).all() == ["alice/llm", None]
    assert ticker.slept == []  # a bounded run does not sleep after its last cycle


def test_failures_back_off_and_buffered_samples_are_sent_in_order(control_plane):
    control_plane.statuses[:] = [503, 503]
    ticker = Ticker()
    with httpx.Client(timeout=5) as client:
        agent = make_agent(control_plane.url, client, ticker, interval=10, max_backoff=25)
        assert agent.run(cycles=4) == 0
    assert ticker.slept == [20, 25, 10]  # 10*2, capped at 25, then back to the interval
    statuses_seen = [r["json"]["sampled_at"] for r in control_plane.requests]
    # Sampling 1 was tried twice (503s), then samplings 1-3 went out oldest first, then sampling 4.
    assert statuses_seen == [
        "2024-06-01T12:00:15+00:00",
        "2024-06-01T12:00:15+00:00",
        "2024-06-01T12:00:15+00:00",
        "2024-06-01T12:00:30+00:00",
        "2024-06-01T12:00:45+00:00",
        "2024-06-01T12:01:00+00:00",
    ]


def test_an_unreachable_control_plane_fails_the_once_run(control_plane):
    url = control_plane.url
    control_plane.close()  # nothing listens there any more
    with httpx.Client(timeout=2) as client:
        assert make_agent(url, client, Ticker()).run(cycles=1) == 1


def test_a_refused_post_is_dropped_not_retried(control_plane, caplog):
    control_plane.statuses[:] = [401]
    ticker = Ticker()
    with httpx.Client(timeout=5) as client:
        agent = make_agent(control_plane.url, client, ticker, interval=10)
        assert agent.run(cycles=2) == 0
    assert len(control_plane.requests) == 2 and ticker.slept == [20]
    assert "refused GPU samples (401)" in caplog.text


def test_samples_go_out_unattributed_when_the_runtime_cannot_be_asked(control_plane, caplog):
    def broken(_gpus):
        raise ConnectionError("Cannot connect to the Docker daemon")

    with httpx.Client(timeout=5) as client:
        assert make_agent(control_plane.url, client, Ticker(), mapper=broken).run(cycles=1) == 0
    assert all(g["space"] is None for g in control_plane.requests[0]["json"]["gpus"])
    assert "posting samples unattributed" in caplog.text


def test_a_gpu_read_failure_is_logged_and_retried(control_plane, caplog):
    class Flaky:
        calls = 0

        def devices(self) -> list[GpuReading]:
            self.calls += 1
            if self.calls == 1:
                raise NvmlUnavailable("NVML read failed: GPU is lost")
            return RecordedReader(A10G_NODE).devices()

    ticker = Ticker()
    with httpx.Client(timeout=5) as client:
        assert make_agent(control_plane.url, client, ticker, reader=Flaky(), interval=5).run(cycles=2) == 0
    assert len(control_plane.requests) == 1 and ticker.slept == [10]
    assert "GPU is lost" in caplog.text


def test_cli_once_with_a_recording(control_plane, monkeypatch):
    monkeypatch.setenv("SPACEYARD_AGENT_TOKEN", "tok")
    argv = ["--recording", str(A10G_NODE), "--url", control_plane.url, "--node", "a10g-1", "--mapping", "none"]
    assert main([*argv, "--once"]) == 0
    [req] = control_plane.requests
    assert (req["json"]["node"], req["headers"]["Authorization"]) == ("a10g-1", "Bearer tok")


def test_cli_without_url_or_token_or_with_a_bad_setting_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("SPACEYARD_AGENT_TOKEN", raising=False)
    monkeypatch.delenv("SPACEYARD_AGENT_URL", raising=False)
    assert main(["--recording", str(A10G_NODE), "--once"]) == 2
    assert "SPACEYARD_AGENT_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("SPACEYARD_AGENT_TOKEN", "tok")
    assert main(["--recording", str(A10G_NODE), "--url", "http://127.0.0.1:9", "--interval", "-5", "--once"]) == 2
    assert "invalid setting: interval" in capsys.readouterr().err


def test_cli_record_writes_a_replayable_recording(tmp_path):
    out = tmp_path / "node.json"
    assert main(["--recording", str(H100_NODE), "--record", str(out), "--frames", "2"]) == 0
    assert len(json.loads(out.read_text())["frames"]) == 2


def _gpu_present() -> bool:
    try:
        NvmlReader().close()
    except NvmlUnavailable:
        return False
    return True


GPU_PRESENT = _gpu_present()


@pytest.mark.skipif(GPU_PRESENT, reason="an NVIDIA GPU is present: the no-driver path cannot be seen here")
def test_without_a_driver_nvml_reader_says_so_and_the_cli_exits_2(capsys):
    with pytest.raises(NvmlUnavailable) as e:
        NvmlReader()
    assert str(e.value) == NO_DRIVER_MESSAGE
    assert main(["--once", "--url", "http://127.0.0.1:9", "--mapping", "none"]) == 2
    err = capsys.readouterr().err
    assert err == f"spaceyard gpu-agent: {NO_DRIVER_MESSAGE}\n"


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_PRESENT, reason="no NVIDIA GPU on this machine")
def test_nvml_reader_reads_the_real_gpus():
    reader = NvmlReader()
    try:
        gpus = reader.devices()
    finally:
        reader.close()
    assert gpus and [g.index for g in gpus] == list(range(len(gpus)))
    for g in gpus:
        assert g.uuid.startswith("GPU-") and g.model.startswith("NVIDIA")
        assert 0 <= g.utilization_pct <= 100
        assert 0 <= g.memory_used_bytes <= g.memory_total_bytes and g.memory_total_bytes > 2**30
        assert g.power_watts is None or g.power_watts > 0
