"""Pod, Deployment and Event shapes (as `kubectl get -o json` prints them) mapped to Instance states.

The fixtures are written by hand in the shape of kubectl output from Kubernetes 1.28–1.30, messages
included; see fixtures/README.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes.client import CoreV1Event, V1Pod

from controlplane.runtime.k8s_objects import START_LABEL, InstanceKey, instance_endpoint, object_name, service_endpoint
from controlplane.runtime.k8s_status import container_run, instance_for, instance_from_pod, pod_view, reported_pod

FIXTURES = Path(__file__).with_name("fixtures")
NAME = object_name("alice/demo")
KEY = InstanceKey(NAME, 7)  # the recorded objects carry no start label


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def recorded(name: str) -> tuple[dict, list[dict]]:
    data = load(name)
    return data["pod"], data["events"]["items"]


def test_fixtures_use_the_real_object_name() -> None:
    pod, _ = recorded("running_ready")
    assert pod["metadata"]["labels"]["spaceyard.dev/space"] == NAME


def test_insufficient_gpu_is_pending_with_the_newest_scheduler_message() -> None:
    pod, events = recorded("pending_insufficient_gpu")
    view = pod_view(pod, events)
    assert view.state == "pending"
    assert view.message.startswith("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector,")
    assert "2 Insufficient nvidia.com/gpu" in view.message


def test_unschedulable_without_events_reads_the_pod_condition() -> None:
    pod, events = recorded("pending_untolerated_taint_no_events")
    view = pod_view(pod, events)
    assert view.state == "pending"
    assert "untolerated taint {nvidia.com/gpu: present}" in view.message


def test_old_scheduling_failures_do_not_outlive_scheduling() -> None:
    pod, events = recorded("container_creating_pulling")
    _, scheduler_events = recorded("pending_insufficient_gpu")
    view = pod_view(pod, events + scheduler_events)
    assert view.state == "starting"
    assert view.message == 'Pulling image "registry.example.com/spaces/alice-demo:7"'


@pytest.mark.parametrize(
    ("fixture", "reason", "detail"),
    [
        ("image_pull_backoff", "ImagePullBackOff", 'Back-off pulling image "registry.example.com/spaces/alice-demo:7"'),
        ("err_image_pull", "ErrImagePull", "no basic auth credentials"),
    ],
)
def test_image_pull_failures_fail_with_the_reason(fixture: str, reason: str, detail: str) -> None:
    view = pod_view(*recorded(fixture))
    assert view.state == "failed"
    assert view.message.startswith(f"{reason}: ")
    assert detail in view.message


def test_crash_loop_after_startup_timeout_names_the_probe() -> None:
    view = pod_view(*recorded("crash_loop_startup_probe"))
    assert view.state == "failed"
    assert view.exit_code == 137
    assert view.message.startswith("CrashLoopBackOff: the app keeps exiting; last exit code 137")
    assert "Startup probe failed: dial tcp 10.244.1.7:7860: connect: connection refused" in view.message
    assert view.finished_at == datetime(2024, 5, 2, 10, 38, 2, tzinfo=UTC)


def test_crash_loop_of_a_failing_app_gives_its_exit_code() -> None:
    view = pod_view(*recorded("crash_loop_app_error"))
    assert (view.state, view.exit_code) == ("failed", 1)
    assert view.message == "CrashLoopBackOff: the app keeps exiting; last exit code 1"


def test_listening_late_is_starting_with_the_probe_message() -> None:
    view = pod_view(*recorded("starting_waiting_for_port"))
    assert view.state == "starting"
    assert view.message.startswith("waiting for the app to answer on its port (Startup probe failed")


def test_ready_is_running_and_old_probe_failures_are_forgotten() -> None:
    view = pod_view(*recorded("running_ready"))
    assert (view.state, view.message) == ("running", None)
    assert view.started_at == datetime(2024, 5, 2, 10, 0, 40, tzinfo=UTC)


def test_started_but_unready_stays_running_with_the_readiness_failure() -> None:
    view = pod_view(*recorded("running_unready"))
    assert view.state == "running"
    assert view.message == "Readiness probe failed: dial tcp 10.244.1.7:7860: i/o timeout"


def test_terminated_is_exited_with_exit_code() -> None:
    view = pod_view(*recorded("oom_killed"))
    assert (view.state, view.exit_code) == ("exited", 137)
    assert view.message == "exit code 137 (OOMKilled)"
    assert view.finished_at == datetime(2024, 5, 2, 10, 12, 31, tzinfo=UTC)


def at(minute: int, second: int) -> datetime:
    return datetime(2024, 5, 2, 10, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fixture", "run"),
    [
        ("running_ready", (at(0, 40), None)),
        ("oom_killed", (at(0, 40), at(12, 31))),
        ("crash_loop_app_error", (at(3, 0), at(3, 2))),  # waiting to restart: the last run's own times
        ("container_creating_pulling", (None, None)),  # never started: no run to bill
    ],
)
def test_a_run_is_the_app_containers_own_start_and_finish(fixture: str, run: tuple) -> None:
    pod, _ = recorded(fixture)
    assert container_run(pod) == run


@pytest.mark.parametrize("fixture", ["evicted", "evicted_without_container_state"])
def test_eviction_is_failed_with_the_kubelet_message(fixture: str) -> None:
    view = pod_view(*recorded(fixture))
    assert view.state == "failed"
    assert view.message.startswith("Evicted: The node was low on resource: memory.")


def test_terminating_pod_is_exited() -> None:
    view = pod_view(*recorded("terminating"))
    assert (view.state, view.message) == ("exited", "stopping")


def test_instance_from_pod_reads_labels_and_annotations() -> None:
    pod, events = recorded("pending_insufficient_gpu")
    instance = instance_from_pod(pod, events)
    assert instance.id == f"{NAME}:7"
    assert instance.space == "alice/demo"
    assert (instance.build_id, instance.tier, instance.state) == (7, "t4-small", "pending")
    assert instance.endpoint is None  # an address only once the app answers, as the docker backend does


def test_running_instance_has_its_own_service_address() -> None:
    pod, events = recorded("running_ready")
    pod["metadata"]["labels"][START_LABEL] = "a1b2c3"
    instance = instance_from_pod(pod, events)
    assert instance.state == "running" and instance.id == f"{NAME}:7:a1b2c3"
    # Its own Service (only its pods), not the Space's: a redeploy's old and new instances are two addresses.
    assert instance.endpoint == f"{NAME}-b7-a1b2c3.spaces.svc.cluster.local:80"
    assert instance.endpoint == instance_endpoint(InstanceKey.parse(instance.id), "spaces")
    # A pod of a Deployment from before each start had its own: the Space's Service, which still selects it.
    legacy = instance_from_pod(*recorded("running_ready"))
    assert legacy.endpoint == service_endpoint(NAME, "spaces") == f"{NAME}.spaces.svc.cluster.local:80"


def test_deleted_pod_is_exited() -> None:
    pod, _ = recorded("running_ready")
    instance = instance_from_pod(pod, deleted=True)
    assert (instance.state, instance.message) == ("exited", "pod deleted")


def test_client_model_objects_map_like_dicts() -> None:
    pod, events = recorded("crash_loop_startup_probe")
    models = [CoreV1Event.from_dict(e) for e in events]
    assert pod_view(V1Pod.from_dict(pod), models) == pod_view(pod, events)


def test_build_instance_prefers_live_pods_over_terminating_ones() -> None:
    old, _ = recorded("terminating")
    new, _ = recorded("container_creating_pulling")
    new["metadata"]["creationTimestamp"] = "2024-05-02T12:00:31Z"
    assert reported_pod([old, new], KEY) == new
    assert reported_pod([old], KEY) == old
    assert reported_pod([old, new], InstanceKey(NAME, 8)) is None


def test_build_instance_of_a_replaced_build_is_gone() -> None:
    deployment = load("deployment_scaled_to_zero")
    deployment["metadata"]["labels"]["spaceyard.dev/build"] = "8"
    assert instance_for(deployment, [], KEY) is None
    assert instance_for(None, [], KEY) is None


def test_build_instance_scaled_to_zero_is_exited() -> None:
    instance = instance_for(load("deployment_scaled_to_zero"), [], KEY)
    assert (instance.id, instance.space, instance.state) == (f"{NAME}:7", "alice/demo", "exited")
    assert instance.message == "scaled to 0"


def test_build_instance_whose_pod_cannot_be_created_is_failed() -> None:
    instance = instance_for(load("deployment_quota_exceeded"), [], KEY)
    assert instance.state == "failed"
    assert "exceeded quota: gpu-quota" in instance.message


def test_build_instance_with_a_pod_uses_the_pod() -> None:
    pod, events = recorded("pending_insufficient_gpu")
    instance = instance_for(load("deployment_quota_exceeded"), [pod], KEY, events)
    assert instance.state == "pending" and "Insufficient nvidia.com/gpu" in instance.message


def test_resumed_build_whose_paused_pod_is_still_terminating_is_pending() -> None:
    # Seen on a real node: scale to 0, then at once to 1; the old pod takes seconds to go.
    terminating, events = recorded("terminating")
    deployment = load("deployment_scaled_to_zero")
    assert instance_for(deployment, [terminating], KEY, events).state == "exited"  # still pausing
    deployment["spec"]["replicas"] = 1
    instance = instance_for(deployment, [terminating], KEY, events)
    assert (instance.state, instance.message) == ("pending", "waiting for the pod to be created")


def test_a_restart_is_its_own_instance() -> None:
    # Two starts of build 7: each instance reports only its own pods, so the restart's new pod does not speak for
    # the one serving, nor the other way round.
    pod, events = recorded("running_ready")
    first, second = InstanceKey(NAME, 7, "aaaaaa"), InstanceKey(NAME, 7, "bbbbbb")
    pod["metadata"]["labels"]["spaceyard.dev/start"] = first.start
    assert instance_from_pod(pod).id == first.id
    assert reported_pod([pod], first) == pod and reported_pod([pod], second) is None
    assert instance_for(None, [pod], second) is None
    assert reported_pod([pod], KEY) is None  # an id from before starts had their own names only its Deployment
