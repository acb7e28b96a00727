"""Gradio starts Spaces' hot-reload server when SYSTEM=spaces. Spaceyard deploys code by push, so there is
nothing to reload: return at once (without this, Gradio logs a RuntimeError into every Space's run log)."""

from collections.abc import Callable
from threading import Event


def start_reload_server(prerun: Callable[[], None], postrun: Callable[[], None], stop_event: Event) -> None:
    return None
