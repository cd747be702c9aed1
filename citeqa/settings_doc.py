"""The README's configuration table, generated from :class:`citeqa.config.Settings`.

    python -m citeqa.settings_doc        # print the table
    python -m citeqa.settings_doc --write  # rewrite it in ./README.md between the markers

tests/test_settings_doc.py fails when README.md and Settings disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic.fields import FieldInfo

from citeqa.config import Settings

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"


def _default(name: str, field: FieldInfo) -> str:
    if field.annotation is not None and "SecretStr" in str(field.annotation):
        return "(unset)"
    value = field.get_default()
    if name == "corpus_path":
        return "the bundled `ml_papers.txt`"
    if value is None:
        return "(unset)"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `CITEQA_{name.upper()}` | {_default(name, field)} | {description} |")
    return "\n".join(rows)


def rewrite(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{BEGIN}\n{settings_table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv:
        rewrite(Path("README.md"))  # a maintainer's command, run in the repository
    else:
        print(settings_table())
