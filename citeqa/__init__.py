"""citeqa: question answering over documents with verified citations."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one version: pyproject.toml's, as installed (the CLI, the API and eval runs show it).
    __version__ = version("citeqa")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
