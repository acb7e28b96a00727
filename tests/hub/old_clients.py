"""Older major versions of the Hub clients, each in its own venv (kept between runs under /tmp: installing takes a
while): huggingface_hub 0.x and gradio_client 1.x. One helper makes both, so every test that runs an old client
shares one venv per version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HUB_0X = Path("/tmp/spaceyard-hub-0x")
GRADIO_CLIENT_1X = Path("/tmp/spaceyard-gradio-client-1x")


def old_venv(folder: Path, requirement: str) -> Path | None:
    """The python of a venv at `folder` with `requirement` installed (made on first use); None when it cannot be
    made (no network for pip, say): callers skip with that reason."""
    python = folder / "bin" / "python"
    done = folder / ".spaceyard-installed"  # a venv whose install failed half-way is installed again
    if not done.exists():
        try:
            if not python.exists():
                venv = [sys.executable, "-m", "venv", str(folder)]
                subprocess.run(venv, check=True, capture_output=True, timeout=120)
            pip = [str(python), "-m", "pip", "install", "-q", requirement]
            subprocess.run(pip, check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError):
            return None
        done.write_text(requirement + "\n")
    return python


def hub_0x() -> Path | None:
    return old_venv(HUB_0X, "huggingface_hub>=0.30,<1")


def gradio_client_1x() -> Path | None:
    return old_venv(GRADIO_CLIENT_1X, "gradio_client>=1,<2")


def version(python: Path, package: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import {package}; print({package}.__version__)"], capture_output=True, text=True
    )
    return out.stdout.strip()
