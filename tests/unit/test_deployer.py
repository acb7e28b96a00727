"""The Deployer on the fake runtime: from a built image to a serving app, and every way that can fail."""

from __future__ import annotations

import asyncio

import httpx

from controlplane.runtime.fake import Behaviour
from controlplane.stages import SERVING
from tests.unit.plane import control_plane


async def test_deploy_runs_the_app_and_routes_to_it(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("demo")
        await cp.deployer.deploy(space_id, build_id)
        space = cp.space(space_id)
        assert (space.stage, space.error_message, space.hardware_current) == ("RUNNING", None, "cpu-basic")
        (instance,) = cp.runtime.list()
        assert (space.container_id, space.endpoint, space.running_build_id) == (
            instance.id,
            instance.endpoint,
            build_id,
        )
        assert httpx.get(f"http://{space.endpoint}/").text == "fake app\n"
        (spec,) = cp.runtime.started
        assert spec.env["SPACE_ID"] == "alice/demo" and spec.image == "fake/alice-demo:1"


async def test_slow_start_within_the_startup_timeout_runs(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("slow", startup_duration_timeout=10)
        cp.runtime.behave("alice/slow", Behaviour(start_delay=0.5))
        task = cp.deployer.deploy(space_id, build_id)
        assert (await cp.stage_of(space_id, "APP_STARTING")).error_message == "Starting commit c0ffeec."
        await task
        assert cp.space(space_id).stage == "RUNNING"


async def test_slow_start_over_the_startup_timeout_is_a_runtime_error(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("slower", startup_duration_timeout=1)
        cp.runtime.behave("alice/slower", Behaviour(start_delay=60, logs=("loading the model...",)))
        await cp.deployer.deploy(space_id, build_id)
        space = cp.space(space_id)
        assert space.stage == "RUNTIME_ERROR"
        assert space.error_message == (
            "The app did not answer on its port within 1 s (startup_duration_timeout).\n"
            "Last log lines:\nloading the model..."
        )
        assert cp.runtime.list() == []  # the instance that never answered is removed


async def test_waiting_for_a_node_does_not_count_as_start_up_time(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("pending", startup_duration_timeout=0.5)
        cp.runtime.behave("alice/pending", Behaviour(pending=1.0, pending_message="0/3 nodes are available."))
        task = cp.deployer.deploy(space_id, build_id)
        waiting = await cp.stage_of(space_id, "APP_STARTING")
        await cp.until(lambda: cp.space(space_id).detail == "waiting for hardware", "the pending message")
        assert cp.space(space_id).error_message == "Waiting for hardware: 0/3 nodes are available."
        await task
        assert waiting.stage == "APP_STARTING" and cp.space(space_id).stage == "RUNNING"


async def test_app_that_exits_while_starting_is_a_runtime_error_with_its_logs(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("broken")
        cp.runtime.behave(
            "alice/broken",
            Behaviour(
                start_delay=0.2,
                crash_after=0,
                exit_code=3,
                logs=("Traceback ...", "ImportError: no module named gradio"),
            ),
        )
        await cp.deployer.deploy(space_id, build_id)
        space = cp.space(space_id)
        assert space.stage == "RUNTIME_ERROR"
        assert space.error_message.startswith("The app exited (code 3) before it answered.\nLast log lines:\n")
        assert "ImportError: no module named gradio" in space.error_message


async def test_crash_after_start_is_seen_through_the_watch(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("flaky")
        cp.runtime.behave("alice/flaky", Behaviour(crash_after=0.5, exit_code=137))
        await cp.deployer.deploy(space_id, build_id)
        assert cp.space(space_id).stage == "RUNNING"

        def first_end() -> str:
            return next(i.id for i in cp.runtime.watch() if i.state in ("exited", "failed"))

        # What the control plane's instance watch does with an instance that ended.
        await asyncio.to_thread(cp.deployer.instance_died, await asyncio.to_thread(first_end))
        space = cp.space(space_id)
        assert (space.stage, space.endpoint) == ("RUNTIME_ERROR", None)
        assert space.error_message.startswith("The app stopped (exit code 137).\nLast log lines:")


async def test_engine_error_on_start_is_a_clear_runtime_error(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("down")
        cp.runtime.break_engine("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
        await cp.deployer.deploy(space_id, build_id)
        space = cp.space(space_id)
        assert space.stage == "RUNTIME_ERROR"
        assert space.error_message == (
            "The app could not be started: Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        )
        cp.runtime.repair_engine()
        await cp.deployer.deploy(space_id, build_id)
        assert cp.space(space_id).stage == "RUNNING"


async def test_engine_error_on_a_redeploy_keeps_the_old_version_serving(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("steady")
        await cp.deployer.deploy(space_id, build_id)
        serving = cp.space(space_id)
        cp.runtime.break_engine("engine unavailable")
        await cp.deployer.deploy(space_id, build_id)
        space = cp.space(space_id)
        assert space.stage in SERVING and space.stage == "RUNNING"
        assert space.error_message == (
            "The new version failed to start; the previous one still runs. "
            "The app could not be started: engine unavailable"
        )
        assert (space.container_id, space.endpoint) == (serving.container_id, serving.endpoint)
