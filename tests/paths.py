"""Where the tests find the repository's own files (datasets, README): the checkout under test.

The package itself never computes paths from the source tree (citeqa/resources.py); the tests,
which only run from a checkout, may.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
