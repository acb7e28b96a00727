"""A list + watch cache of one kind of object in one namespace, like KubeSpawner's reflector.

One thread lists the objects, then watches from the list's resourceVersion: a watch the server ends is resumed
from the last version seen, one whose version is too old (410 Gone) starts over with a list. Readers take the
cached objects (the API's JSON) without asking the API server; a writer waits for its own write to show up
(`wait`) so that it reads what it wrote. Objects that vanished between two lists are reported as DELETED.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300  # the server ends each watch; it is resumed from the last resourceVersion
RETRY_SECONDS = 1.0  # after a broken watch or a failed list (API server restarting)

# (event type "ADDED" | "MODIFIED" | "DELETED", the object as the API sent it); called on the reflector's thread.
Listener = Callable[[str, dict], None]


def version_of(obj: dict) -> int:
    """An object's resourceVersion as a number. The API calls it opaque, but etcd's are revisions that only grow,
    which is what a writer waiting for its write needs to compare."""
    return int(obj.get("metadata", {}).get("resourceVersion") or 0)


class Reflector:
    def __init__(
        self,
        list_call: Callable[..., object],
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        listener: Listener | None = None,
        name: str = "objects",
    ) -> None:
        self._list_call, self.namespace, self.name = list_call, namespace, name
        self._selectors = {"label_selector": label_selector, "field_selector": field_selector}
        self._listener = listener
        self._objects: dict[str, dict] = {}  # uid -> object
        self._version = 0  # the newest resourceVersion seen (list, event or bookmark)
        self._changed = threading.Condition()
        self._listed = threading.Event()
        self._stopping = threading.Event()
        self._response: object | None = None  # the open watch, shut down by stop()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None  # why the last list or watch failed, until one works

    # --- reading ---------------------------------------------------------------------------------

    def objects(self) -> list[dict]:
        with self._changed:
            return list(self._objects.values())

    def wait(self, done: Callable[[list[dict]], bool], timeout: float) -> bool:
        """Block until `done(objects)` holds (checked after every change); False when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(list(self._objects.values())):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def wait_version(self, version: int, timeout: float) -> bool:
        """Block until the cache holds everything up to `version` (a write's resourceVersion): watch events arrive
        in version order, so once one at or past it is in, so is that write."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._version < version:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # --- running ---------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Start the thread (once) and wait for the first list, so that readers never see an empty cache that
        only means "not listed yet"."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name=f"k8s-reflector-{self.name}")
            self._thread.start()
        if not self._listed.wait(timeout):
            raise RuntimeError(f"could not list {self.name} in {self.namespace}: {self.error}")

    def stop(self, timeout: float = 5) -> None:
        """End the watch at once (its connection is shut down, not left to time out) and the thread."""
        self._stopping.set()
        response = self._response
        if response is not None:
            response.shutdown()  # type: ignore[attr-defined]  # wakes the blocked read
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                self.error = None
            except ApiException as e:
                if e.status == 410:
                    log.info("%s watch: resourceVersion too old (%s); listing again", self.name, e.reason)
                    version = None
                    continue
                self._failed(e)
            except Exception as e:  # the API server restarting, a dropped connection: resume shortly
                self._failed(e)

    def _failed(self, e: Exception) -> None:
        if self._stopping.is_set():
            return
        self.error = e
        log.warning("%s watch in %s broke (%s); resuming", self.name, self.namespace, e)
        self._stopping.wait(RETRY_SECONDS)

    def _list(self) -> str:
        response = self._list_call(self.namespace, _preload_content=False, **self._selectors)
        try:
            listing = json.loads(response.data)  # type: ignore[attr-defined]
        finally:
            response.release_conn()  # type: ignore[attr-defined]
        items = {o["metadata"]["uid"]: o for o in listing.get("items") or []}
        version = listing["metadata"]["resourceVersion"]
        with self._changed:
            gone = [o for uid, o in self._objects.items() if uid not in items]
            self._objects = items
            self._version = max(self._version, int(version))
            self._changed.notify_all()
        # Deleted while no watch was open, so no DELETED event came for them.
        for obj in gone:
            self._tell("DELETED", obj)
        for obj in items.values():
            self._tell("MODIFIED", obj)
        self._listed.set()
        return version

    def _watch(self, version: str) -> str:
        """Apply the events of one watch from `version`; the last version seen, to resume from."""
        response = self._list_call(
            self.namespace,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            _preload_content=False,
            **self._selectors,
        )
        self._response = response
        try:
            if self._stopping.is_set():
                return version
            for line in iter_resp_lines(response):
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":  # 410 Gone when the version is too old, as a Status object
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj["metadata"]["resourceVersion"]
                with self._changed:
                    if kind == "DELETED":
                        self._objects.pop(obj["metadata"]["uid"], None)
                    elif kind != "BOOKMARK":
                        self._objects[obj["metadata"]["uid"]] = obj
                    self._version = max(self._version, int(version))
                    self._changed.notify_all()
                if kind != "BOOKMARK":
                    self._tell(kind, obj)
        finally:
            self._response = None
            response.release_conn()  # type: ignore[attr-defined]
        return version

    def _tell(self, kind: str, obj: dict) -> None:
        if self._listener is None:
            return
        try:
            self._listener(kind, obj)
        except Exception:  # a listener's bug must not stop the cache
            log.exception("%s watch: listener failed on %s", self.name, kind)
