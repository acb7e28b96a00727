"""Deciding who may open a private Space: from memory (controlplane/access_cache.py) against the database read per
request it replaced, through the control plane's resolver on a SQLite database.

    .venv/bin/python bench/private_auth.py [--requests 2000]

Prints p50 and p95 of `SpaceResolver.resolve` in microseconds, for a token and a browser session, with the
decision cached and with the cache emptied before every request (the old behaviour: a token or session read,
plus its user).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane import sessions  # noqa: E402
from controlplane.core.config import Settings  # noqa: E402
from controlplane.core.db import migrate  # noqa: E402
from controlplane.routing import SpaceResolver  # noqa: E402
from controlplane.services import Services  # noqa: E402
from controlplane.spaces import create_space  # noqa: E402
from controlplane.users import add_user, issue_token  # noqa: E402


async def measure(resolver: SpaceResolver, headers: dict[str, str], n: int, cached: bool) -> list[float]:
    times = []
    for _ in range(n):
        if not cached:
            resolver.access.clear()
        start = time.perf_counter()
        await resolver.resolve(label=None, owner="alice", name="secret", request_headers=headers)
        times.append((time.perf_counter() - start) * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="spaceyard-auth-bench-"))
    settings = Settings(data_dir=folder, secret_key="bench-secret")
    migrate(settings.sqlalchemy_url)
    svc = Services.create(settings)
    with svc.db.session() as s:
        alice = add_user(s, "alice", password="bench password 1")
        create_space(svc, s, owner="alice", name="secret", sdk="static", private=True, hardware=None)
        token = issue_token(s, alice, "bench", "read")
        cookie = sessions.start(s, alice, "bench")
    cases = {
        "token": {"authorization": f"Bearer {token}"},
        "session cookie": {"cookie": f"{sessions.cookie_name(settings)}={cookie}"},
    }
    resolver = SpaceResolver(svc)
    print(f"{args.requests} resolves of a private Space, SQLite, microseconds")
    print(f"{'credential':16} {'decision':10} {'p50':>8} {'p95':>8}")
    for name, headers in cases.items():
        for cached in (False, True):
            asyncio.run(measure(resolver, headers, 50, cached))  # warm up
            times = asyncio.run(measure(resolver, headers, args.requests, cached))
            p95 = statistics.quantiles(times, n=20)[18]
            label = "memory" if cached else "database"
            print(f"{name:16} {label:10} {statistics.median(times):8.0f} {p95:8.0f}")


if __name__ == "__main__":
    main()
