"""The NDJSON commit body as `huggingface_hub` sends it: operations in order, limits before anything is written."""

from __future__ import annotations

import base64
import json

import pytest

from controlplane.api.errors import status_of
from controlplane.commits import CommitRequest, Limits
from controlplane.errors import DomainError

LIMITS = Limits(max_file_bytes=100, max_commit_bytes=250)


def line(key: str, **value) -> bytes:
    return json.dumps({"key": key, "value": value}).encode()


def add(path: str, content: bytes) -> bytes:
    return line("file", path=path, content=base64.b64encode(content).decode(), encoding="base64")


def request(*lines: bytes) -> CommitRequest:
    wanted = CommitRequest(LIMITS)
    for each in lines:
        wanted.feed(each)
    return wanted


def test_header_and_operations_fold_in_order():
    wanted = request(
        line("header", summary="Add things", description="why", parentCommit="a" * 40),
        add("data/x.txt", b"early"),  # dropped: its folder is deleted after it
        add("keep.txt", b"1"),
        line("deletedFile", path="old.txt"),
        line("deletedFolder", path="data/"),
        add("data/y.txt", b"after"),  # survives: added after the folder's deletion
    )
    assert wanted.parent == "a" * 40 and wanted.message == "Add things\n\nwhy"
    files, folders = wanted.changes({"old.txt", "data/z.txt"})
    assert files == {"keep.txt": b"1", "old.txt": None, "data/y.txt": b"after"}
    assert folders == ("data",)


def test_deleting_what_does_not_exist_is_entry_not_found():
    with pytest.raises(DomainError) as err:
        request(line("deletedFile", path="nope.txt")).changes({"other.txt"})
    assert status_of(err.value) == 404 and err.value.code == "EntryNotFound"
    with pytest.raises(DomainError) as err:
        request(line("deletedFolder", path="dir/")).changes({"dirt.txt"})
    assert status_of(err.value) == 404


def test_file_and_commit_limits_name_the_limit():
    with pytest.raises(DomainError) as err:
        request(add("big.bin", b"x" * 101))
    assert status_of(err.value) == 413 and "100 bytes" in err.value.message
    assert "SPACEYARD_MAX_FILE_BYTES" in err.value.message
    with pytest.raises(DomainError) as err:
        request(add("a", b"x" * 100), add("b", b"x" * 100), add("c", b"x" * 51))
    assert status_of(err.value) == 413 and "250 bytes" in err.value.message
    assert "SPACEYARD_MAX_COMMIT_BYTES" in err.value.message


@pytest.mark.parametrize("path", ["/abs", "a/../b", ".git/config", "a//b", "", "x/./y"])
def test_unsafe_paths_are_refused(path):
    with pytest.raises(DomainError) as err:
        request(add(path, b"x"))
    assert status_of(err.value) == 400


def test_lfs_files_become_pointers_and_bad_ones_are_refused():
    op = request(line("lfsFile", path="model.bin", algo="sha256", oid="a" * 64, size=10)).operations[0]
    assert op.content == f"version https://git-lfs.github.com/spec/v1\noid sha256:{'a' * 64}\nsize 10\n".encode()
    # No size: a CommitOperationCopy of an LFS file; the commit takes the stored object's size.
    copy = request(line("lfsFile", path="copy.bin", algo="sha256", oid="a" * 64)).operations[0]
    assert copy.content is None and copy.lfs.oid == "a" * 64
    for bad in (
        {"oid": "0" * 63, "size": 1},
        {"oid": "0" * 64, "size": -1},
        {"oid": "0" * 64, "size": 1, "algo": "md5"},
    ):
        with pytest.raises(DomainError) as err:
            request(line("lfsFile", path="model.bin", **bad))
        assert status_of(err.value) == 400


def test_garbage_is_a_bad_request():
    for bad in (b"{not json", b'{"key": "file"}', add("a", b"x").replace(b'base64"', b'utf-8"')):
        with pytest.raises(DomainError) as err:
            request(bad)
        assert status_of(err.value) == 400
