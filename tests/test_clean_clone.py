"""A clone stays clean after its own tests: what tests write goes to ignored folders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_browser import ARTIFACTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_the_browser_artifacts_folder_is_ignored_and_holds_nothing_tracked() -> None:
    probe = ARTIFACTS / "chat.png"
    ignored = subprocess.run(["git", "check-ignore", "--quiet", str(probe)], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{probe} is not ignored (or is tracked) by git"
    tracked = subprocess.run(
        ["git", "ls-files", str(ARTIFACTS)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout == ""
