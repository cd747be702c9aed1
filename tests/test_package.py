"""citeqa installed as a normal package: build the sdist and the wheel, install the wheel into a
fresh venv with the lock's pins, then use it from a folder outside the repository.

This is how `pip install`, `pipx install` and the Docker image run citeqa: no editable checkout,
no repository on sys.path, every file read at run time taken from the installed package. The
venv's pip installs requirements/runtime.txt with its hashes, from the pip cache that `make`
filled with the same files (PyPI is asked for index pages when the cache is cold, nothing else).
A small folder of three papers keeps ingest cheap; the bundled corpus is only checked present.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.load import ApiProcess
from tests.paths import REPO_ROOT
from tests.servers import child_env, paper, paper_name, write_corpus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
# What the installed package must hold beside its code (paths inside site-packages).
PACKAGE_DATA = [
    "citeqa/data/ml_papers.txt",
    "citeqa/prompts/answer_system.md",
    "citeqa/prompts/answer_user.md",
    "citeqa/prompts/condense.md",
    "citeqa/prompts/judge_claims.md",
    "citeqa/assets/minilm-tokenizer.json",
    "service/api/static/index.html",
    "service/api/static/app.js",
    "service/api/static/style.css",
    "service/api/static/favicon.svg",
    "evals/baseline.json",
]


def test_every_python_package_of_the_tree_is_declared() -> None:
    """The wheel's package list is explicit (prompts/ and data/ are mapped into citeqa): a new
    subpackage left out of it installs nowhere, and only the slow wheel test below would say so
    (ingest.formats was)."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(setuptools["packages"])
    for root in ("citeqa", "cli", "ingest", "service", "evals"):
        for init in (REPO_ROOT / root).rglob("__init__.py"):
            package = ".".join(init.parent.relative_to(REPO_ROOT).parts)
            assert package in declared, f"{package} is missing from [tool.setuptools] packages"


@dataclass
class Installed:
    venv: Path
    work: Path  # an empty folder outside the repository: the working directory of every command
    env: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
        return result


def run(command: list[str], cwd: Path, timeout: float = 600) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it (so a file missing from the sdist is missing from
    the wheel too), with the venv's pinned setuptools: no build isolation, nothing unpinned."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), "."], REPO_ROOT)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    venv, work = root / "venv", root / "work"
    work.mkdir()
    run([sys.executable, "-m", "venv", str(venv)], root)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # The locked pip first: the one `venv` brings may not install the runtime lock (Makefile).
    for lock in ("build.txt", "runtime.txt"):
        lock_file = str(REPO_ROOT / "requirements" / lock)
        run([*pip, "install", "--quiet", "--no-compile", "--require-hashes", "-r", lock_file], root)
    (wheel,) = dist.glob("citeqa-*.whl")
    run([*pip, "install", "--quiet", "--no-deps", str(wheel)], root)
    run([*pip, "check"], root)
    env = child_env(CITEQA_GENERATOR="extractive")
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    return Installed(venv, work, env)


def test_sdist_and_wheel_hold_the_package_data(dist: Path) -> None:
    import tarfile
    import zipfile

    (wheel,) = dist.glob("citeqa-*.whl")
    (sdist,) = dist.glob("citeqa-*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert set(PACKAGE_DATA) <= in_wheel
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    # The sdist keeps the repository's layout: prompts/ and data/ at the top.
    repo = {
        p.replace("citeqa/data/", "data/").replace("citeqa/prompts/", "prompts/")
        for p in PACKAGE_DATA
    }
    assert repo | {"README.md", "pyproject.toml"} <= in_sdist


def test_installed_package_reads_its_files_from_site_packages(installed: Installed) -> None:
    assert installed.run("citeqa", "--version").stdout.strip() == f"citeqa {VERSION}"
    probe = (
        "import json, citeqa, citeqa.resources as r, service.api.page;"
        "from citeqa.config import Settings;"
        "print(json.dumps([citeqa.__file__, str(Settings().corpus_path), str(r.PROMPTS_DIR),"
        " str(r.TOKENIZER_PATH), str(r.STATIC_DIR)]))"
    )
    paths = [Path(p) for p in json.loads(installed.run("python", "-c", probe).stdout)]
    site = installed.venv / "lib"
    assert all(site in p.parents for p in paths), paths  # not the repository's copies
    assert all(p.exists() for p in paths), paths
    corpus = paths[1].read_text(encoding="utf-8")  # what `citeqa ingest` takes by default
    assert corpus == (REPO_ROOT / "data" / "ml_papers.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ingested(installed: Installed) -> Installed:
    papers = write_corpus(installed.work / "papers", 3)
    out = installed.run("citeqa", "ingest", str(papers)).stdout
    assert "3 documents - added 3" in out, out
    return installed


def test_installed_cli_ingests_and_answers(ingested: Installed) -> None:
    question = f"How many days was {paper_name(1)} trained for?"
    result = ingested.run("citeqa", "ask", question, "--json")
    answer = json.loads(result.stdout)
    assert not answer["refused"], answer
    _, text = paper(1)
    assert {c["doc_id"] for c in answer["citations"]} == {"file:paper-001.md"}
    assert all(c["quote"] in text for c in answer["citations"])


@pytest.fixture(scope="module")
def served(ingested: Installed) -> Iterator[str]:
    citeqa = [str(ingested.bin / "citeqa")]
    api = ApiProcess(ingested.env, ingested.work / "serve.log", citeqa=citeqa, cwd=ingested.work)
    api.start(timeout=180)
    try:
        yield api.url
    finally:
        api.stop()


def test_installed_server_serves_the_page_the_docs_and_answers(served: str) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert client.get("/static/app.js").status_code == 200
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert client.get("/openapi.json").json()["info"]["version"] == VERSION
        reply = client.post("/v1/ask", json={"question": f"How many GPUs trained {paper_name(2)}?"})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert not body["refused"], body
        assert {c["doc_id"] for c in body["citations"]} == {"file:paper-002.md"}
