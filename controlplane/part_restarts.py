"""How often `spaceyard up` restarted each part, for `/metrics` (`spaceyard_part_restarts_total{part=...}`).

The supervisor is another process (the control plane is one of the parts it restarts), so it writes the counts
to a file in the data dir and the control plane reads it at scrape time. No file (the control plane runs on its
own, in a container or on Kubernetes): no series.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.core.files import private_opener


def counts_file(data_dir: Path) -> Path:
    return data_dir / "part-restarts.json"


def write_counts(data_dir: Path, counts: dict[str, int]) -> None:
    path = counts_file(data_dir)
    staged = path.with_name(path.name + ".tmp")
    with open(staged, "w", opener=private_opener) as f:
        json.dump(counts, f)
    os.replace(staged, path)  # a scrape never reads half a file


def read_counts(data_dir: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(counts_file(data_dir).read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError):
        return {}


class PartRestarts(Collector):
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "spaceyard_part_restarts", "Times `spaceyard up` restarted a part after it exited.", labels=["part"]
        )
        for part, n in sorted(read_counts(self._data_dir).items()):
            family.add_metric([part], n)
        yield family
