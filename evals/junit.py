"""JUnit XML of an eval run: one test case per item, so any CI lists failed items natively.

A case fails with the reasons of :func:`evals.runner.item_failures`; its message holds the
question, the answer, the citations and what was expected. Times are the item's latency.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from evals.runner import item_failures

_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (a PDF's form feed, say)."""
    return _NOT_XML.sub("", text)


def _details(record: Mapping[str, Any]) -> str:
    citations = "\n".join(
        f"  [{c['n']}] {c['title']}"
        + (f" ({c['source']}, p. {c['page']})" if c.get("page") else "")
        + f": {c['quote']}"
        for c in record.get("citations", [])
    )
    return _xml_text(
        f"question: {record['question']}\n"
        f"answer{' (refused)' if record.get('refused') else ''}: {record['answer']}\n"
        f"citations:\n{citations or '  (none)'}\n"
        f"expected: {json.dumps(record['expected'], ensure_ascii=False)}\n"
    )


def junit_xml(records: Sequence[Mapping[str, Any]], name: str) -> ET.ElementTree:
    """The run as a ``<testsuites>`` document with one ``<testsuite>``."""
    failures = [item_failures(r) for r in records]
    seconds = [float(r.get("timings_ms", {}).get("total", 0.0)) / 1000 for r in records]
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"citeqa eval {name}",
        tests=str(len(records)),
        failures=str(sum(bool(f) for f in failures)),
        errors="0",
        skipped="0",
        time=f"{sum(seconds):.3f}",
    )
    for record, reasons, secs in zip(records, failures, seconds, strict=True):
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"citeqa.eval.{name}.{record['type']}",
            name=_xml_text(f"{record['id']}: {record['question']}"),
            time=f"{secs:.3f}",
        )
        if reasons:
            failure = ET.SubElement(
                case, "failure", message=_xml_text("; ".join(reasons)), type="eval"
            )
            failure.text = _details(record)
        else:
            ET.SubElement(case, "system-out").text = _details(record)
    ET.indent(suites)
    return ET.ElementTree(suites)


def write_junit(records: Sequence[Mapping[str, Any]], path: Path, name: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(records, name).write(path, encoding="utf-8", xml_declaration=True)
    return path
