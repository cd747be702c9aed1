"""The lock files (requirements/*.txt, written by `make lock`) and the venv `make` builds from them.

Every install the project makes (`make`'s venv, the Docker image, the wheel test) takes the
lock's versions and file hashes, so a transitive dependency cannot move on by itself. These
tests fail when the lock is stale (pyproject.toml asks for something it does not pin), when
the venv under test holds a package or a version the lock does not, or when `pip check` finds
a broken requirement.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.paths import REPO_ROOT

LOCKS = REPO_ROOT / "requirements"
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def pins(name: str) -> dict[str, tuple[str, list[str]]]:
    """``{package: (version, sha256 hashes)}`` of a lock file; every entry must be hashed."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in (LOCKS / name).read_text(encoding="utf-8").splitlines():
        match = PIN_RE.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            out[current] = (match.group(2), [])
        elif line.strip().startswith("--hash=sha256:"):
            out[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return out


def declared() -> list[Requirement]:
    """pyproject.toml's requirements: the runtime ones and those of every extra."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("lock", ["runtime.txt", "dev.txt", "build.txt"])
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    locked = pins(lock)
    assert locked, f"{lock} pins nothing"
    for package, (_, hashes) in locked.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), package
    assert "torch" not in locked  # the embedding model needs no torch (and this machine caps it)


def test_the_locks_satisfy_pyproject_and_agree() -> None:
    runtime, dev, build = pins("runtime.txt"), pins("dev.txt"), pins("build.txt")
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in dev, f"{requirement} is not in requirements/dev.txt: run `make lock`"
        assert requirement.specifier.contains(dev[name][0], prereleases=True), (
            f"{requirement} but requirements/dev.txt pins {dev[name][0]}: run `make lock`"
        )
    for package, (version, _) in [*runtime.items(), *build.items()]:
        assert dev[package][0] == version, f"{package}: the locks disagree"
    assert {"pip", "setuptools"} <= build.keys()  # what builds the project is pinned too


def test_the_venv_is_exactly_the_dev_lock() -> None:
    """The venv running these tests (`make`'s) holds the dev lock's versions, nothing else."""
    locked = pins("dev.txt")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("citeqa")
    extra = {n: v for n, v in installed.items() if n not in locked}
    assert not extra, f"installed but not locked: {extra}"
    moved = {n: (v, locked[n][0]) for n, v in installed.items() if v != locked[n][0]}
    assert not moved, f"installed != locked: {moved}"


def test_pip_check_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
