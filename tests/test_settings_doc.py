"""The README's configuration table matches Settings."""

from __future__ import annotations

from citeqa.config import Settings
from citeqa.settings_doc import BEGIN, END, settings_table
from tests.paths import REPO_ROOT


def test_readme_table_is_generated_from_settings() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{BEGIN}\n{settings_table()}\n{END}" in readme, (
        "README.md's configuration table is stale: run `python -m citeqa.settings_doc --write`"
    )


def test_every_setting_is_described() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []
