"""Pure mapping from Kubernetes Pods, Deployments and Events to an Instance's state and message.

Inputs are API-shaped dicts (as `kubectl get -o json` or a watch's raw object prints them) or the
official client's model objects. The control plane turns the state into a stage: "pending" with the
scheduler's message is "waiting for hardware", "failed" is RUNTIME_ERROR, "running" is RUNNING.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from controlplane.runtime.base import Instance
from controlplane.runtime.k8s_objects import (
    CONTAINER,
    SPACE_ANNOTATION,
    TIER_LABEL,
    InstanceKey,
    instance_endpoint,
)

# Waiting reasons the kubelet keeps retrying but that need a person: a wrong image, missing pull
# credentials, a bad secret reference, or an app that keeps exiting.
FAILED_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class PodView:
    state: str  # "pending" | "starting" | "running" | "exited" | "failed"
    message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@cache
def _serializer() -> Any:
    from kubernetes.client import ApiClient

    return ApiClient()


def as_dict(obj: Any) -> dict:
    """A client model object (or dict) in the API's own JSON shape: camelCase keys, string timestamps."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    return _serializer().sanitize_for_serialization(obj)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), None)


def _app_container(pod: dict) -> dict | None:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return next((c for c in statuses if c.get("name") == CONTAINER), statuses[0] if statuses else None)


def _event_time(event: dict) -> str:
    # core/v1 Events fill lastTimestamp; events.k8s.io/v1 (and newer core ones) only eventTime.
    return (
        event.get("lastTimestamp")
        or event.get("deprecatedLastTimestamp")
        or event.get("eventTime")
        or event.get("metadata", {}).get("creationTimestamp")
        or ""
    )


def latest_event(events: Iterable[Any], *reasons: str) -> dict | None:
    matching = [e for e in map(as_dict, events) if e.get("reason") in reasons]
    return max(matching, key=_event_time, default=None)


def _event_message(event: dict | None) -> str | None:
    if not event:
        return None
    return (event.get("message") or event.get("note") or "").strip() or None


def _probe_failure(events: list, probe: str) -> str | None:
    """The newest "Unhealthy" message of one probe ("Startup", "Readiness"); the kubelet names it first."""
    failures = [e for e in map(as_dict, events) if e.get("reason") == "Unhealthy"]
    failures = [e for e in failures if (_event_message(e) or "").startswith(f"{probe} probe failed")]
    return _event_message(max(failures, key=_event_time, default=None))


def _terminated_text(term: dict) -> str:
    code = term.get("exitCode")
    reason = term.get("reason")
    text = f"exit code {code}"
    if reason and reason not in ("Error", "Completed"):
        text += f" ({reason})"  # OOMKilled, ContainerCannotRun… say more than the code
    if term.get("message"):
        text += f": {term['message'].strip()}"
    return text


def pod_view(pod: Any, events: Iterable[Any] = ()) -> PodView:
    """The state of one Space pod; events enrich the message (scheduler, probe and pull failures)."""
    pod = as_dict(pod)
    events = list(events)
    status = pod.get("status", {})
    phase = status.get("phase") or "Pending"
    started = parse_time(status.get("startTime"))
    container = _app_container(pod) or {}
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated")

    if pod.get("metadata", {}).get("deletionTimestamp"):
        return PodView("exited", "stopping", started_at=started)

    terminated = state.get("terminated")
    if phase == "Failed" and (status.get("reason") or not terminated):
        # Evicted, preempted or its node shut down: the pod's verdict says more than its container's.
        reason = status.get("reason") or "Failed"
        detail = (status.get("message") or "").strip()
        return PodView(
            "failed",
            f"{reason}: {detail}" if detail else reason,
            exit_code=terminated.get("exitCode") if terminated else None,
            started_at=started,
        )
    if terminated:
        return PodView(
            "exited",
            _terminated_text(terminated),
            exit_code=terminated.get("exitCode"),
            started_at=parse_time(terminated.get("startedAt")) or started,
            finished_at=parse_time(terminated.get("finishedAt")),
        )
    if phase == "Unknown":
        return PodView("failed", status.get("message") or "the pod's node stopped reporting", started_at=started)

    scheduled = _condition(pod, "PodScheduled")
    if not scheduled or scheduled.get("status") != "True":
        # The scheduler writes its verdict ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu…")
        # both to this condition and to a FailedScheduling event; the event is the newer of the two.
        message = _event_message(latest_event(events, "FailedScheduling"))
        if scheduled and scheduled.get("reason") == "Unschedulable":
            message = message or scheduled.get("message")
        return PodView("pending", message or "waiting to be scheduled")

    waiting = state.get("waiting")
    if waiting and waiting.get("reason") in FAILED_WAITING:
        reason = waiting["reason"]
        detail = (waiting.get("message") or "").strip()
        if reason == "CrashLoopBackOff":
            # The back-off text names only the pod; the last exit and the probe say why.
            detail = f"the app keeps exiting; last {_terminated_text(last)}" if last else detail
            if probe := _probe_failure(events, "Startup"):
                detail += f"; {probe}"
        return PodView(
            "failed",
            f"{reason}: {detail}" if detail else reason,
            exit_code=last.get("exitCode") if last else None,
            started_at=started,
            finished_at=parse_time(last.get("finishedAt")) if last else None,
        )
    if waiting:
        pulling = latest_event(events, "Pulling")
        return PodView("starting", _event_message(pulling) or waiting.get("reason"), started_at=started)

    running = state.get("running")
    ready = _condition(pod, "Ready")
    if running and ready and ready.get("status") == "True":
        return PodView("running", None, started_at=parse_time(running.get("startedAt")) or started)
    if running:
        if container.get("started"):
            # Past its startup probe, so it listened once; unready now means busy or hung, not starting.
            probe = _probe_failure(events, "Readiness") or "not ready"
            return PodView("running", probe, started_at=parse_time(running.get("startedAt")) or started)
        message = "waiting for the app to answer on its port"
        probe = _probe_failure(events, "Startup")
        return PodView("starting", f"{message} ({probe})" if probe else message, started_at=started)
    return PodView("starting", "creating the container", started_at=started)


def container_run(pod: Any) -> tuple[datetime | None, datetime | None]:
    """(started, finished) of the app container's current or last run, by the kubelet's own clock; finished is
    None while it runs, both None before it ever started. Metering bills these, not when we happened to look."""
    container = _app_container(as_dict(pod)) or {}
    state = container.get("state") or {}
    if running := state.get("running"):
        return parse_time(running.get("startedAt")), None
    ended = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
    if ended and ended.get("startedAt"):
        return parse_time(ended.get("startedAt")), parse_time(ended.get("finishedAt"))
    return None, None


def instance_from_pod(pod: Any, events: Iterable[Any] = (), deleted: bool = False) -> Instance:
    """The Instance a Space pod stands for: id, Space, build and tier come from its labels."""
    pod = as_dict(pod)
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    key = InstanceKey.of(pod)
    name = key.name
    view = pod_view(pod, events)
    if deleted and view.state not in ("exited", "failed"):
        view = PodView("exited", "pod deleted", started_at=view.started_at)
    return Instance(
        id=key.id,
        space=(meta.get("annotations") or {}).get(SPACE_ANNOTATION, name),
        build_id=key.build,
        tier=labels.get(TIER_LABEL, ""),
        state=view.state,
        # Like the docker backend: an address only once the app answers, so callers can route on it.
        endpoint=instance_endpoint(key, meta.get("namespace", "default")) if view.state == "running" else None,
        started_at=view.started_at,
        finished_at=view.finished_at,
        exit_code=view.exit_code,
        message=view.message,
    )


def _newest(pods: list[dict]) -> dict | None:
    return max(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "", default=None)


def reported_pod(pods: Iterable[Any], key: InstanceKey) -> dict | None:
    """The pod that speaks for an instance: its newest live one, else the newest still going away."""
    mine = [p for p in map(as_dict, pods) if key.matches(p)]
    live = [p for p in mine if not p.get("metadata", {}).get("deletionTimestamp")]
    return _newest(live) or _newest(mine)


def instance_for(deployment: Any, pods: Iterable[Any], key: InstanceKey, events: Iterable[Any] = ()) -> Instance | None:
    """One instance from its Deployment and pods; None once nothing of it is left.

    `events` are those of the pod whose state is reported (reported_pod).
    """
    dep = as_dict(deployment)
    meta = dep.get("metadata", {})
    labels = meta.get("labels") or {}
    mine = bool(dep) and key.matches(dep)
    wanted = mine and dep.get("spec", {}).get("replicas", 1) != 0
    pod = reported_pod(pods, key)
    # Right after a resume the paused pod may still be going away (seconds on a real node): its "stopping"
    # is not this build's state while the Deployment wants a replica; the new pod's will be.
    if pod is not None and not (wanted and pod.get("metadata", {}).get("deletionTimestamp")):
        return instance_from_pod(pod, events)
    if not mine:
        return None  # the Deployment is deleted and its pods are gone
    if not wanted:
        state, message = "exited", "scaled to 0"
    elif (failure := _condition(dep, "ReplicaFailure")) and failure.get("status") == "True":
        state, message = "failed", failure.get("message") or failure.get("reason")  # e.g. exceeded quota
    else:
        state, message = "pending", "waiting for the pod to be created"
    return Instance(
        id=key.id,
        space=(meta.get("annotations") or {}).get(SPACE_ANNOTATION, key.name),
        build_id=key.build,
        tier=labels.get(TIER_LABEL, ""),
        state=state,
        message=message,
    )
