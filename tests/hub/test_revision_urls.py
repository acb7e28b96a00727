"""Revisions in raw Hub URLs: a branch's '/' travels as %2F, and owners or names that read like verbs stay names."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from controlplane.api.revisions import revision_and_path


def request(raw: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": raw, "raw_path": raw.encode(), "headers": []})


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [
        ("/spaces/alice/demo/resolve/feature%2Fx/docs/a%20b.md", ("feature/x", "docs/a b.md")),
        ("/spaces/resolve/resolve/resolve/main/resolve/f.txt", ("main", "resolve/f.txt")),
        ("/api/spaces/tree/tree/tree/v1%2F2", ("v1/2", "")),
        ("/api/spaces/alice/demo/tree/main/docs", ("main", "docs")),
        ("/api/spaces/alice/demo/tree/..%2F..%2Fetc", ("../../etc", "")),
    ],
)
def test_the_revision_is_the_segment_after_the_verb(raw, wanted):
    assert revision_and_path(request(raw), "decoded", "path") == wanted
