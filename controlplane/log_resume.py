"""Where a log stream resumes: the SSE `id` of every log event, and the `Last-Event-ID` a reconnecting client
(a browser's EventSource does it by itself) sends back, so it gets what it missed instead of the whole log.

Build logs: `{build id}|{Redis stream entry id}` (or `|line-{n}` for a log stored after its stream expired);
a newer build than the client's starts from its beginning. Run logs: `{instance}|{engine time}|{k}`, the k-th
line stamped with that time (the engine stamps several lines of one write alike); another instance (a
redeploy) starts from its beginning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_STREAM_ID = re.compile(r"^\d+-\d+$")
_STORED_LINE = re.compile(r"^line-(\d+)$")

# A run-log position: (the time's seconds part, its fraction to 9 digits, k); tuples order like the lines.
RunPosition = tuple[str, str, int]


def last_event_id(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The client's last event: the header a reconnecting EventSource sends, else `?last_event_id=` (a page opening
    a new EventSource after the browser gave up cannot set the header). The header is the newer one."""
    return headers.get("last-event-id") or query.get("last_event_id")


def event(event_id: str, payload: bytes) -> bytes:
    """An SSE event (`payload` is its `data:` block) with its id."""
    return f"id: {event_id}\n".encode() + payload


def build_event_id(build_id: int, position: str) -> str:
    return f"{build_id}|{position}"


def build_resume(last_event_id: str | None, build_id: int) -> tuple[str, int]:
    """(the stream entry to read after, stored lines to skip) for `build_id`: ("0", 0) to start over."""
    owner, _, position = (last_event_id or "").partition("|")
    if owner != str(build_id):
        return "0", 0
    if _STREAM_ID.match(position):
        return position, 0
    stored = _STORED_LINE.match(position)
    return "0", int(stored.group(1)) + 1 if stored else 0


def run_position(stamp: str, previous: RunPosition | None) -> RunPosition:
    """The position of a run-log line stamped `stamp` (RFC 3339, UTC `Z`), after the line at `previous`."""
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    key = (seconds, fraction.ljust(9, "0"))
    k = previous[2] + 1 if previous is not None and previous[:2] == key else 0
    return (*key, k)


def run_event_id(instance: str, stamp: str, position: RunPosition) -> str:
    return f"{instance}|{stamp}|{position[2]}"


def run_resume(last_event_id: str | None, instance: str) -> RunPosition | None:
    """The position of the client's last line of `instance`, or None to start over."""
    parts = (last_event_id or "").rsplit("|", 2)
    if len(parts) != 3 or parts[0] != instance or not parts[2].isdigit():
        return None
    seconds, fraction, _k = run_position(parts[1], None)
    return seconds, fraction, int(parts[2])
