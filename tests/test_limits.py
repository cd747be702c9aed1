"""One bound for ``top_k`` (:data:`citeqa.config.MAX_TOP_K`): the settings, the API's request
models (and so its OpenAPI schema), the engine and the CLI all read the same definition. (The
question length is a setting: tests/test_bad_input.py changes it and watches every route.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from citeqa.config import MAX_TOP_K, Settings
from citeqa.errors import InputError
from cli.main import main
from service.answering.limits import check_top_k
from service.api.app import create_app


def test_every_top_k_of_the_api_schema_is_bounded_by_max_top_k(tmp_path: Path) -> None:
    schema = create_app(Settings(data_dir=tmp_path)).openapi()
    components = schema["components"]["schemas"]
    bounds = {
        "AskRequest.top_k": components["AskRequest"]["properties"]["top_k"]["anyOf"][0],
        "ChatCompletionRequest.top_k": components["ChatCompletionRequest"]["properties"]["top_k"][
            "anyOf"
        ][0],
        "search k": next(
            p["schema"]
            for p in schema["paths"]["/v1/search"]["get"]["parameters"]
            if p["name"] == "k"
        ),
    }
    for where, bound in bounds.items():
        assert (bound["minimum"], bound["maximum"]) == (1, MAX_TOP_K), where


def test_the_settings_and_the_engine_take_the_same_bound(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, top_k=MAX_TOP_K)
    assert check_top_k(None, settings) == MAX_TOP_K
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, top_k=MAX_TOP_K + 1)
    with pytest.raises(InputError, match=f"between 1 and {MAX_TOP_K}, got {MAX_TOP_K + 1}"):
        check_top_k(MAX_TOP_K + 1, settings)


@pytest.mark.parametrize("command", ["ask", "search"])
def test_the_cli_says_the_bound(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"(1-{MAX_TOP_K})" in capsys.readouterr().out
