"""The control plane's background loops: one pass after another, a failed pass logged and never fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def forever(name: str, one_pass: Callable[[], Awaitable[object]], pause: float, after_error: float = 1.0) -> None:
    """Run `one_pass` again and again, `pause` seconds apart (`after_error` after a failed pass)."""
    while True:
        try:
            await one_pass()
            delay = pause
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s pass failed; trying again", name)
            delay = max(pause, after_error)
        await asyncio.sleep(delay)
