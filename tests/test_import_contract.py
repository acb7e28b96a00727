"""The contract "the domain never imports the API or the dashboard" (pyproject.toml) names its modules one by one:
a domain module added later and not named there would escape it. Every top-level module of controlplane is
either a surface (named here) or in the contract."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import controlplane

# The surfaces and what wires them: they may import the API and the dashboard.
SURFACES = {"api", "app", "cli", "dashboard", "launcher"}


def test_every_domain_module_is_in_the_contract() -> None:
    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["name"].startswith("The domain")]
    modules = {m.name for m in pkgutil.iter_modules(controlplane.__path__)}
    named = set(contract["source_modules"])
    missing = sorted(f"controlplane.{m}" for m in modules - SURFACES if f"controlplane.{m}" not in named)
    assert not missing, f"add to the contract's source_modules in pyproject.toml: {missing}"
