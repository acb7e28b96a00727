"""Dashboard render benchmark: server time of the main pages with 1,000 Spaces in the database.

    .venv/bin/python bench/dashboard_render.py [--spaces 1000] [--runs 30]

A temp SQLite database made with `controlplane.core.db.migrate`, Spaces inserted directly (as many public
as private, half of them the signed-in user's), pages fetched through the ASGI app with httpx (no network,
no background loops). Goal: every page's median < 200 ms. Prints median and p95 per page.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from controlplane import sessions  # noqa: E402
from controlplane.app import create_app  # noqa: E402
from controlplane.core.config import Settings  # noqa: E402
from controlplane.core.db import migrate  # noqa: E402
from controlplane.models import Space, UsageInterval  # noqa: E402
from controlplane.spaces import create_space  # noqa: E402
from controlplane.users import add_user  # noqa: E402

GOAL_MS = 200.0
STAGES = ["RUNNING", "BUILDING", "NO_APP_FILE", "BUILD_ERROR", "PAUSED", "RUNTIME_ERROR"]
TIERS = ["cpu-basic", "cpu-upgrade", "t4-small", "a10g-large"]


def seed(app, n: int) -> str:
    """Insert n Spaces (and a month of usage rows for the user's); return the user's session cookie."""
    svc = app.state.services
    now = datetime.now(UTC)
    with svc.db.session() as s:
        user = add_user(s, "bench", password="bench", admin=True)
        add_user(s, "other")
        # One real Space (with a git repo) for the Space page; the rest are rows only.
        create_space(svc, s, owner="bench", name="real", sdk="gradio", private=False, hardware="cpu-basic")
        s.add_all(
            Space(owner="bench" if i % 2 else "other", name=f"space-{i:04d}", sdk="gradio", private=i % 4 == 0,
                  hardware_requested=TIERS[i % len(TIERS)], stage=STAGES[i % len(STAGES)],
                  card_data={"title": f"Space {i}", "emoji": "🚀", "sdk": "gradio"},
                  updated_at=now - timedelta(minutes=i))
            for i in range(n - 1)
        )
        s.add_all(
            UsageInterval(space_name=f"bench/space-{i:04d}", owner="bench", tier=TIERS[i % len(TIERS)],
                          unit_cost=0.4, gpu_count=i % 2, started_at=now - timedelta(hours=i % 200 + 2),
                          ended_at=now - timedelta(hours=i % 200 + 1))
            for i in range(1, n, 2)
        )
        return sessions.start(s, user, "bench")


async def measure(app, cookie: str, pages: list[str], runs: int) -> dict[str, list[float]]:
    transport = httpx.ASGITransport(app=app)
    timings: dict[str, list[float]] = {p: [] for p in pages}
    cookies = {sessions.cookie_name(app.state.services.settings): cookie}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", cookies=cookies) as c:
        for page in pages:
            for i in range(runs + 2):
                start = time.perf_counter()
                resp = await c.get(page)
                elapsed = (time.perf_counter() - start) * 1000
                if resp.status_code != 200:
                    raise SystemExit(f"{page}: HTTP {resp.status_code}: {resp.text[:300]}")
                if i >= 2:  # the first two warm the template cache and the database connection
                    timings[page].append(elapsed)
    return timings


def time_pages(spaces: int, pages: list[str], runs: int) -> dict[str, list[float]]:
    """Milliseconds per request for each page, on a fresh database seeded with `spaces` Spaces."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", secret_key="bench")
        app = create_app(settings)
        migrate(settings.sqlalchemy_url)
        cookie = seed(app, spaces)
        return asyncio.run(measure(app, cookie, pages, runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    pages = ["/?show=public", "/?show=mine", "/spaces/bench/real", "/spaces/bench/real/settings", "/new",
             "/usage", "/tokens", "/admin"]
    timings = time_pages(args.spaces, pages, args.runs)
    print(f"{args.spaces} Spaces, {args.runs} runs per page (ASGI, no network)\n")
    print(f"{'page':<32} {'median ms':>10} {'p95 ms':>8}  goal < {GOAL_MS:.0f} ms")
    ok = True
    for page, values in timings.items():
        median = statistics.median(values)
        p95 = sorted(values)[int(len(values) * 0.95) - 1]
        ok &= median < GOAL_MS
        print(f"{page:<32} {median:>10.1f} {p95:>8.1f}  {'ok' if median < GOAL_MS else 'SLOW'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
