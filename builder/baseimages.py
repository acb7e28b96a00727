"""Base images, built once per engine and reused: the Python base and one image per SDK version.

Without a registry (base_image_source=debootstrap) the Python base comes from the Debian mirror:
debootstrap a minimal bookworm with Python, then `docker import` it. SDK bases are built FROM it.
A file lock per image keeps two builds on one host from making the same image at once.

Build them all ahead of time (for `spaceyard up` and CI): python -m builder.baseimages
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker

from builder import cacert, engine
from builder.dockerfile import python_image, python_version_for, sdk_base_dockerfile, sdk_image
from builder.settings import BuilderSettings
from builder.spaceconfig import DEFAULT_SDK_VERSIONS

HASH_LABEL = "spaceyard.base-hash"
IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
DEBOOTSTRAP_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"


class BaseImageError(Exception):
    """A base image could not be made (debootstrap failed, pip could not install the SDK...)."""


@contextlib.contextmanager
def image_lock(image: str) -> Iterator[None]:
    """Hold an exclusive lock named after `image` (blocks while another process builds it)."""
    lock_dir = Path(tempfile.gettempdir()) / "spaceyard-locks"
    lock_dir.mkdir(exist_ok=True)
    name = image.replace("/", "_").replace(":", "_")
    with open(lock_dir / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_logged(cmd: list[str], log: engine.Log) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            log(line.rstrip())
    if proc.wait() != 0:
        raise BaseImageError(f"{cmd[0]} exited with status {proc.returncode}")


def ensure_python_base(api: docker.APIClient, python: str, settings: BuilderSettings, log: engine.Log) -> None:
    """Make spaceyard/base:pyX.Y with debootstrap + docker import, unless it exists (registry mode: no-op)."""
    if settings.base_image_source == "registry":
        return  # FROM python:X-slim is pulled by the build itself
    image = python_image(python, settings)
    if engine.image_labels(api, image) is not None:
        return
    with image_lock(image):
        if engine.image_labels(api, image) is not None:
            return  # another build made it while we waited
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            raise BaseImageError(f"{image} is missing and building it needs debootstrap, run as root")
        started = time.monotonic()
        log(f"Building {image} from {settings.debian_mirror} ({settings.debian_suite}), once per engine")
        with tempfile.TemporaryDirectory(prefix="spaceyard-rootfs-") as tmp:
            rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
            _run_logged(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={DEBOOTSTRAP_PACKAGES}",
                    settings.debian_suite,
                    str(rootfs),
                    settings.debian_mirror,
                ],
                log,
            )
            # Downloaded .debs and package lists are a third of the tree and useless in the image.
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / junk).glob("*"):
                    if path.is_file():
                        path.unlink()
            _run_logged(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], log)
            repository, tag = image.rsplit(":", 1)
            api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=IMPORT_CHANGES)
        log(f"Built {image} in {time.monotonic() - started:.0f} s")


def ensure_sdk_base(
    api: docker.APIClient,
    sdk: str,
    sdk_version: str | None,
    python: str,
    settings: BuilderSettings,
    log: engine.Log,
) -> str:
    """Make the SDK base image unless an identical one exists; returns its tag.

    "Identical" = same Dockerfile text, runtime-images/ files and CA bundle (a hash in a label), so
    changing the CA bundle, the pip index or an SDK helper rebuilds the base on the next build.
    """
    ensure_python_base(api, python, settings, log)
    image = sdk_image(sdk, sdk_version, python)
    text = sdk_base_dockerfile(sdk, sdk_version, python, settings)
    digest = hashlib.sha256(text.encode())
    helpers = settings.runtime_images_dir.rglob("*")
    for path in sorted(p for p in helpers if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(settings.runtime_images_dir).as_posix().encode() + path.read_bytes())
    if settings.build_ca_bundle is not None:
        digest.update(settings.build_ca_bundle.read_bytes())
    wanted = digest.hexdigest()[:16]
    if (engine.image_labels(api, image) or {}).get(HASH_LABEL) == wanted:
        return image
    with image_lock(image):
        if (engine.image_labels(api, image) or {}).get(HASH_LABEL) == wanted:
            return image
        started = time.monotonic()
        log(f"Building SDK base image {image}, once per engine")
        with tempfile.TemporaryDirectory(prefix="spaceyard-sdk-") as tmp:
            context = Path(tmp)
            shutil.copytree(settings.runtime_images_dir, context, dirs_exist_ok=True)
            cacert.add_to_context(settings, context)
            (context / "Dockerfile.spaceyard").write_text(text)
            try:
                engine.build(api, context, "Dockerfile.spaceyard", image, log, labels={HASH_LABEL: wanted})
            except engine.EngineBuildError as exc:
                raise BaseImageError(f"building {image} failed: {exc}") from None
        log(f"Built {image} in {time.monotonic() - started:.0f} s")
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Spaceyard's base images (Python base and SDK bases).")
    parser.add_argument(
        "--sdk",
        action="append",
        choices=["gradio", "streamlit", "static"],
        help="only these SDKs (repeatable); default all",
    )
    parser.add_argument("--gradio-version", default=DEFAULT_SDK_VERSIONS["gradio"])
    parser.add_argument("--streamlit-version", default=DEFAULT_SDK_VERSIONS["streamlit"])
    args = parser.parse_args(argv)
    settings = BuilderSettings()
    api = engine.client(settings)
    python = python_version_for(None, settings)
    versions = {"gradio": args.gradio_version, "streamlit": args.streamlit_version, "static": None}

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        for sdk in args.sdk or ["static", "gradio", "streamlit"]:
            print(f"==> {sdk_image(sdk, versions[sdk], python)}", flush=True)
            ensure_sdk_base(api, sdk, versions[sdk], python, settings, log)
    except BaseImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
