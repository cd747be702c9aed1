"""Files citeqa reads at run time, shipped inside the installed package (package data).

Found with :mod:`importlib.resources`, never from the source tree, so a wheel (``pip install``,
``pipx``, the Docker image) works the same as an editable checkout. In the repository they live
at: ``prompts/`` (installed as ``citeqa.prompts``), ``data/ml_papers.txt`` (``citeqa.data``),
``citeqa/assets/`` and ``service/api/static/``; pyproject.toml maps the first two into the package.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_path(package: str, name: str = "") -> Path:
    """The file or folder ``name`` of ``package`` as a path on disk.

    Every way citeqa installs (wheel, sdist, editable) unpacks it into folders, so package data
    are plain files; a zipped install, which cannot serve them to jinja2 or Starlette as paths,
    is refused with a clear message rather than failing later.
    """
    resource = files(package).joinpath(name) if name else files(package)
    if not isinstance(resource, Path):
        raise RuntimeError(f"{package} is not installed as plain files (zipped?): reinstall it")
    return resource


PROMPTS_DIR = package_path("citeqa.prompts")
BUNDLED_CORPUS = package_path("citeqa.data", "ml_papers.txt")
TOKENIZER_PATH = package_path("citeqa", "assets/minilm-tokenizer.json")
# The development set's answerability features, the prior of every fit (evals/calibrate.py).
ANSWERABILITY_PRIOR = package_path("citeqa", "assets/answerability-prior.json")
STATIC_DIR = package_path("service.api", "static")
