"""API latency with many Spaces: the Hub-compatible calls clients make, against /api/health as the floor.

    .venv/bin/python bench/api_latency.py [--spaces 10000] [--runs 50]

Same setup as bench/dashboard_render.py (temp SQLite through the migrations, rows inserted directly, requests
through the ASGI app with httpx, no network): so the numbers are the server's own time. Prints median and p95
per call and the median above the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dashboard_render import time_pages  # noqa: E402

CALLS = [
    "/api/health",  # the floor: routing and middleware, no database
    "/api/whoami-v2",
    "/api/spaces?limit=100",
    "/api/spaces?author=bench&limit=100",
    "/api/spaces?search=space-09&limit=100",
    "/api/spaces/bench/real",
    "/api/spaces/bench/real/runtime",
    "/api/spaces/bench/space-0999/runtime",
    "/api/spaces/bench/real/tree/main",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    timings = time_pages(args.spaces, CALLS, args.runs)
    floor = statistics.median(timings[CALLS[0]])
    print(f"{args.spaces} Spaces in SQLite, {args.runs} runs per call (ASGI, no network)\n")
    print(f"{'call':<42} {'median ms':>10} {'p95 ms':>8} {'above floor':>12}")
    for call, values in timings.items():
        median = statistics.median(values)
        p95 = sorted(values)[int(len(values) * 0.95) - 1]
        print(f"{call:<42} {median:>10.2f} {p95:>8.2f} {median - floor:>+12.2f}")


if __name__ == "__main__":
    main()
