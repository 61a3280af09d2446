"""The config reference and JSON Schema are generated from the models: up to date, complete, and they
accept what the loader accepts and reject what it rejects."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from retrainer.cli import main as cli_main
from retrainer.config import ModelConfig, parse_config
from retrainer.config import reference as config_reference
from retrainer.exceptions import ConfigError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "configuration"
SHIPPED = sorted((REPO / "include" / "models").glob("*.yaml")) + sorted(
    (REPO / "docs" / "backtest" / "configs").glob("*.yaml")
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((DOCS / config_reference.SCHEMA_ID).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_committed_reference_and_schema_are_up_to_date() -> None:
    for name, text in config_reference.expected_files().items():
        committed = (DOCS / name).read_text(encoding="utf-8")
        assert committed == text, f"docs/configuration/{name} is out of date: run `make config-docs`"


def test_every_field_of_every_section_has_a_description() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in config_reference._models(ModelConfig)
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_reference_has_a_row_for_every_key_of_every_section() -> None:
    page = config_reference.render_markdown()
    sections = config_reference._sections()
    assert {path for path, _, _ in sections} >= {
        "",
        "data",
        "data.features[]",
        "triggers.performance",
        "validation.floors.<name>",
        "validation.behaviour.invariance",
        "alerts.channels[]",
        "retention",
    }
    for path, model, _ in sections:
        heading = f"## `{path}`" if path else "## Top level"
        chunk = page.split(heading + " ", 1)[1].split("\n## ", 1)[0]
        for name, field in model.model_fields.items():
            if not field.exclude:
                assert f"| `{name}` |" in chunk, f"{path}.{name} has no row"
    # what the hand-written table said lives on in the descriptions
    assert "one drift event, one retrain" in page
    assert "| `cooldown_batches` | integer ≥ 0 | `3` |" in page


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_schema_accepts_the_shipped_configs(validator: jsonschema.Draft7Validator, path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert [e.message for e in validator.iter_errors(raw)] == []
    parse_config(raw, path)  # and so does the loader


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r["training"].update(min_rows="many"), "is not of type 'integer'"),
        (lambda r: r["training"].update(window="8 weeks"), "does not match"),
        (lambda r: r.update(task="forecasting"), "is not one of"),
        (lambda r: r["triggers"].update(cooldown_batches=-1), "less than the minimum"),
        (lambda r: r.update(trigers={}), "Additional properties are not allowed ('trigers' was unexpected)"),
        (lambda r: r["data"]["features"].append(7), "is not valid under any of the given schemas"),
        (lambda r: r["promotion"].update(mode="canary"), "is not one of"),
    ],
    ids=["wrong-type", "bad-duration", "bad-enum", "below-bound", "unknown-key", "bad-feature", "bad-mode"],
)
def test_schema_rejects_what_the_loader_rejects(
    validator: jsonschema.Draft7Validator, change, expected: str
) -> None:
    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw.setdefault("promotion", {})
    bad = copy.deepcopy(raw)
    change(bad)
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any(expected in m for m in messages), messages
    with pytest.raises(ConfigError):
        parse_config(bad, "bad.yaml")


def test_schema_carries_defaults_and_descriptions_for_editors() -> None:
    schema = config_reference.json_schema()
    trig = schema["$defs"]["TriggerConfig"]["properties"]
    assert trig["prediction_drift"]["default"] == {
        "mode": "auto",
        "auto_share": 0.8,
        "threshold": 0.15,
        "z": 3.0,
        "method": "wasserstein",
    }
    assert trig["cooldown_batches"]["default"] == 3 and trig["cooldown_batches"]["description"]
    assert "source" not in schema["properties"]  # set by the loader, never written in a file
    assert "``" not in json.dumps(schema)


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["config-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_reference.json_schema()
    out = tmp_path / "s.json"
    assert cli_main(["config-schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == config_reference.json_schema()


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert config_reference.main(["--write", "--dir", str(tmp_path)]) == 0
    assert config_reference.main(["--dir", str(tmp_path)]) == 0
    (tmp_path / "reference.md").write_text("# stale\n")
    assert config_reference.main(["--dir", str(tmp_path)]) == 1
