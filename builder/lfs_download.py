"""The build's download of a checkout's Git LFS objects, through the repo's LFS batch API (builder/lfs.py finds the
pointers). Apart from builder/lfs.py so that the push hook, which parses pointers, does not import httpx."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import httpx

from builder.lfs import Pointer


class ObjectMissing(Exception):
    """An object a checkout's pointer names could not be downloaded; the message names the file."""


def download_objects(checkout: Path, repo_url: str, pointers: dict[str, Pointer], timeout: float) -> None:
    """Replace each pointer file by its object, fetched through the repo's LFS batch API (the repo URL carries the
    builder's credentials). Each object goes to a temp file beside its path, is checked (sha256, size) and renamed
    over the pointer: a rename replaces the entry itself and follows no link."""
    try:
        _download(checkout, repo_url, pointers, timeout)
    except httpx.HTTPError as exc:
        raise ObjectMissing(f"downloading the Git LFS files failed: {exc}") from None


def _download(checkout: Path, repo_url: str, pointers: dict[str, Pointer], timeout: float) -> None:
    objects = [{"oid": p.oid, "size": p.size} for p in pointers.values()]
    with httpx.Client(timeout=timeout) as client:
        answer = client.post(
            f"{repo_url}/info/lfs/objects/batch",
            json={"operation": "download", "transfers": ["basic"], "objects": objects},
            headers={"Accept": "application/vnd.git-lfs+json"},
        )
        if answer.status_code != 200:
            raise ObjectMissing(f"the LFS batch API answered {answer.status_code}: {answer.text[:200]}")
        hrefs = {o["oid"]: o["actions"]["download"]["href"] for o in answer.json().get("objects", []) if "actions" in o}
        for path, ptr in pointers.items():
            if ptr.oid not in hrefs:
                raise ObjectMissing(
                    f"{path} is a Git LFS pointer whose object (sha256:{ptr.oid[:12]}…, {ptr.size} bytes) is not on "
                    "the server: push it with git-lfs installed (`git lfs install`, then `git lfs push --all origin`)"
                )
            target = checkout / path
            # The tree said regular file; never write through a link that the checkout might hold instead.
            inside = checkout.resolve() / Path(path).parent
            if not stat.S_ISREG(target.lstat().st_mode) or target.parent.resolve() != inside:
                raise ObjectMissing(f"{path} is not a regular file in the checkout")
            tmp = target.with_name(f".lfs-{ptr.oid[:16]}.tmp")
            digest, size = hashlib.sha256(), 0
            with client.stream("GET", hrefs[ptr.oid]) as resp, open(tmp, "xb") as out:
                if resp.status_code != 200:
                    raise ObjectMissing(f"downloading the LFS object of {path} failed: HTTP {resp.status_code}")
                for chunk in resp.iter_bytes(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if digest.hexdigest() != ptr.oid or size != ptr.size:
                tmp.unlink()
                raise ObjectMissing(f"the LFS object of {path} arrived corrupted (sha256 or size differs)")
            os.chmod(tmp, target.lstat().st_mode & 0o777)
            os.replace(tmp, target)
