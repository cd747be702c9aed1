"""Deployment files: docker-compose.yml, Dockerfile, .dockerignore.

No Docker engine runs here, so the compose file is validated by ``docker-compose config``
(Debian's package; ``scripts/ci-deps.sh`` installs it) and its structure is checked in Python.
The compose check FAILS when the binary is missing, unless CITEQA_ALLOW_NO_COMPOSE=1 says that
this machine may skip it. The two container health probes are run for real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import yaml

from citeqa.config import Settings
from tests.servers import ChromaServer, free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize("profile", [[], ["--profile", "llm"]], ids=["default", "llm"])
def test_docker_compose_config_accepts_the_file(profile: list[str]) -> None:
    binary = compose_binary()
    if binary is None:
        if os.environ.get("CITEQA_ALLOW_NO_COMPOSE") == "1":
            pytest.skip("docker-compose is not installed and CITEQA_ALLOW_NO_COMPOSE=1")
        pytest.fail("docker-compose is not installed: run scripts/ci-deps.sh")
    command = [*binary, "-f", str(COMPOSE), *profile, "config", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_services_and_wiring(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"api", "chroma", "llm"}
    api, chroma, llm = services["api"], services["chroma"], services["llm"]
    assert api["build"] == "."
    assert "CITEQA_CHROMA_URL=http://chroma:8000" in api["environment"]
    assert api["depends_on"] == {"chroma": {"condition": "service_healthy"}}
    assert llm["profiles"] == ["llm"] and "profiles" not in api and "profiles" not in chroma
    assert "llm" not in api["depends_on"]  # the api must start without the optional profile


def test_chroma_image_matches_the_client_pin(compose: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("chromadb=="))
    assert compose["services"]["chroma"]["image"] == f"chromadb/chroma:{pin.split('==')[1]}"


def test_volumes_are_named_and_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name in ("chroma", "llm"):
        mounts = compose["services"][name]["volumes"]
        assert mounts and all(m.split(":")[0] in declared for m in mounts)
    assert any(m.endswith(":/data") for m in compose["services"]["chroma"]["volumes"])


def test_healthchecks_use_only_what_the_images_have(compose: dict[str, Any]) -> None:
    for name in ("chroma", "llm"):
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["retries"] >= 3
        assert not {"curl", "wget"} & set(" ".join(check["test"]).split())


def test_configuration_is_by_environment_and_names_real_settings(compose: dict[str, Any]) -> None:
    """Every CITEQA_* variable the api passes through is a Settings field (no typo silently
    ignored), and none is given a value in the file except the Chroma URL."""
    names = {entry.split("=")[0] for entry in compose["services"]["api"]["environment"]}
    fields = {f"CITEQA_{name.upper()}" for name in Settings.model_fields}
    assert {n for n in names if n.startswith("CITEQA_")} <= fields
    valued = [e for e in compose["services"]["api"]["environment"] if "=" in e]
    assert valued == ["CITEQA_CHROMA_URL=http://chroma:8000"]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> str:
    text = dockerfile().replace("\\\n", " ")
    found = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    assert found, f"no {name} in the Dockerfile"
    return found[-1][len(name) + 1 :].strip()


def test_dockerfile_base_user_and_command() -> None:
    assert instruction("FROM") == "python:3.11-slim"
    assert instruction("USER") not in {"root", "0"}
    assert "useradd" in dockerfile()
    assert json.loads(instruction("CMD")) == ["citeqa", "serve", "--host", "0.0.0.0"]


def test_dockerfile_installs_the_built_wheel_with_the_locks_pins() -> None:
    text = dockerfile().replace("\\\n", " ")
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 2 and froms[0].endswith(" AS build")  # build stage, runtime stage
    runtime = text[text.rindex("\nFROM ") :]
    assert not re.search(r"pip install\b[^\n]*(\s-e\s|--editable)", text)
    assert "pip install --require-hashes -r /tmp/runtime.txt" in runtime
    assert "pip install --no-deps /tmp/dist/citeqa-*.whl" in runtime
    assert "COPY . ." not in runtime  # no source tree in the image: the wheel has it all
    sources = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
    for source in sources:
        if not source.startswith("--from") and source != ".":
            assert (ROOT / source).is_file(), source


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", ".citeqa"} <= ignored


def healthcheck_command() -> list[str]:
    text = instruction("HEALTHCHECK")
    return json.loads(text[text.index("CMD") + 3 :].strip())


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_dockerfile_healthcheck_probe_works() -> None:
    """The HEALTHCHECK command itself, run here: 0 against a /healthz that answers, non-zero
    against a closed port."""
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        for port, ok in ((server.server_address[1], True), (free_port(), False)):
            env = dict(os.environ, CITEQA_PORT=str(port))
            result = subprocess.run([sys.executable, "-c", command[2]], env=env, timeout=30)
            assert (result.returncode == 0) is ok
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_chroma_healthcheck_probe_works_against_chroma_run(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The compose healthcheck of the chroma service, run with bash against a real
    ``chroma run`` (port rewritten): 0 while it serves, non-zero once it is stopped."""
    script = compose["services"]["chroma"]["healthcheck"]["test"][3]
    server = ChromaServer(tmp_path / "db").start()
    probe = re.sub(r"/dev/tcp/127\.0\.0\.1/8000", f"/dev/tcp/127.0.0.1/{server.port}", script)
    try:
        assert run_probe(probe) == 0
    finally:
        server.stop()
    assert run_probe(probe) != 0


def run_probe(script: str) -> int:
    command = ["bash", "-c", script]
    return subprocess.run(command, timeout=10, capture_output=True).returncode


FAKE_APT = """#!/bin/bash
here="${0%/*}"
echo "$*" >> "$here/apt.log"
if [ "$1" = install ]; then
  for arg in "$@"; do
    case "$arg" in
      -*|install) ;;
      chromium-driver) printf '#!/bin/bash\\n' > "$here/chromedriver" ;;
      *) printf '#!/bin/bash\\n' > "$here/$arg" ;;
    esac
  done
  /bin/chmod +x "$here"/*
fi
"""


def test_ci_deps_installs_only_what_is_missing(tmp_path: Path) -> None:
    """scripts/ci-deps.sh against a fake apt-get on a PATH of its own: the first run installs
    the three packages (docker-compose without its recommends, so no Docker engine), the
    second finds everything and runs no apt at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    (bin_dir / "id").symlink_to(shutil.which("id") or "/usr/bin/id")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    script = str(ROOT / "scripts" / "ci-deps.sh")
    for _ in range(2):
        result = subprocess.run(["/bin/bash", script], env=env, capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
    calls = (bin_dir / "apt.log").read_text().splitlines()
    assert calls[0].startswith("update")
    assert "install -y -qq --no-install-recommends docker-compose" in calls
    assert {"install -y -qq chromium", "install -y -qq chromium-driver"} <= set(calls)
    assert len(calls) == 4  # the second run did not call apt-get
