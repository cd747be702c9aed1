"""Shared fixtures: one ingested copy of the bundled corpus per test session, and a guard
that fails any test that tries to reach the network beyond this machine."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# An upload's answerability fit runs in the background after its job (a minute on a large
# collection); tests of other things do not wait for it. The tests of the fit turn it on.
os.environ.setdefault("CITEQA_CALIBRATE_UPLOADS", "false")

from citeqa.config import Settings
from citeqa.embedding import Embedder, MiniLMOnnxEmbedder
from service.answering.engine import Engine, build_engine

pytest_plugins = ["tests.fakes.fixtures"]

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> None:
    host = address[0] if isinstance(address, tuple) else None
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise RuntimeError(f"test tried to reach the network: {address!r}")
    _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return MiniLMOnnxEmbedder()


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """Settings of a store holding the bundled corpus, ingested once per session.

    CITEQA_TEST_STORE may name an already ingested data dir to start from (a local speed-up:
    it is copied, then brought up to date by a normal, incremental ingest).
    """
    from ingest.run import ingest_paths

    data_dir = tmp_path_factory.mktemp("corpus-store")
    seed = os.environ.get("CITEQA_TEST_STORE")
    if seed:
        shutil.copytree(seed, data_dir, dirs_exist_ok=True)
    settings = Settings(data_dir=data_dir, generator="extractive")
    ingest_paths(settings, [settings.corpus_path], embedder=embedder)
    return settings


@pytest.fixture(scope="session")
def engine(corpus_settings: Settings, embedder: Embedder) -> Engine:
    """The extractive engine over the bundled corpus."""
    return build_engine(corpus_settings, embedder=embedder)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Settings:
    """Settings pointing at an empty store of this test's own."""
    return Settings(data_dir=tmp_path / "store", generator="extractive")
