"""Unit tests of the control plane's loops on the fake runtime: async tests run on a fresh event loop each, and
the session ends with one line saying how long this directory took (it must stay well under 30 s)."""

from __future__ import annotations

import asyncio
import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**args))
    return True


def pytest_terminal_summary(terminalreporter) -> None:
    # Every phase (setup, call, teardown) of every test here, whatever its outcome.
    reports = [
        r
        for group in terminalreporter.stats.values()
        for r in group
        if isinstance(r, pytest.TestReport) and r.nodeid.startswith("tests/unit/")
    ]
    if reports:
        tests = {r.nodeid for r in reports}
        seconds = sum(r.duration for r in reports)
        terminalreporter.write_line(f"tests/unit (fake runtime): {len(tests)} tests in {seconds:.2f} s")
