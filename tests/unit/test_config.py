"""Model config loading: strict keys, validated values, file-name check, the CLI, the fingerprint."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from retrainer.cli import main as cli_main
from retrainer.config import load_config, parse_config
from retrainer.exceptions import ConfigError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "include" / "models" / "bikeshare.yaml"
RETRAINER_BIN = Path(sys.executable).parent / "retrainer"


@pytest.fixture
def raw() -> dict:
    """The shipped config as a plain dict, to be modified per test."""
    return yaml.safe_load(SHIPPED.read_text())


def write(folder: Path, raw: dict, name: str = "bikeshare") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_shipped_config_loads():
    cfg = load_config(SHIPPED)

    assert cfg.name == "bikeshare"
    assert cfg.task == "regression"
    assert cfg.data.target == "bikers"
    assert "weathersit" in cfg.data.categorical and "temp" in cfg.data.numeric
    assert cfg.metric == "rmse" and cfg.lower_is_better
    assert cfg.triggers.cooldown_batches == 3 and cfg.triggers.performance.mode == "control"
    assert cfg.source == str(SHIPPED)


def test_unknown_top_level_key_names_key_and_file(tmp_path, raw):
    raw["retrain_every"] = "1W"
    path = write(tmp_path, raw)

    with pytest.raises(ConfigError) as exc:
        load_config(path)

    assert "unknown key 'retrain_every'" in str(exc.value)
    assert str(path) in str(exc.value)


def test_unknown_nested_key_names_dotted_key_and_file(tmp_path, raw):
    raw["triggers"]["cooldown_batchez"] = 3
    path = write(tmp_path, raw)

    with pytest.raises(ConfigError) as exc:
        load_config(path)

    assert "unknown key 'triggers.cooldown_batchez'" in str(exc.value)
    assert str(path) in str(exc.value)


def test_unknown_key_inside_feature_list_is_rejected(tmp_path, raw):
    raw["data"]["features"][0]["maximum"] = 4
    path = write(tmp_path, raw)

    with pytest.raises(ConfigError, match=r"unknown key 'data\.features\.0\.maximum'"):
        load_config(path)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.__setitem__("task", "clustering"), "task"),
        (lambda r: r["triggers"].__setitem__("cooldown_batches", -1), "triggers.cooldown_batches"),
        (lambda r: r["training"].__setitem__("window", "8 weeks"), "training.window"),
        (lambda r: r["validation"].__setitem__("metric", "accuracy"), "do not apply to regression"),
        (lambda r: r["validation"]["floors"].__setitem__("f1", {"min": 0.5}), "do not apply to regression"),
        (lambda r: r.__setitem__("schedule", "every monday at 3"), "schedule"),
        (lambda r: r.__setitem__("schedule", "0 3 * *"), "5-field cron"),
        (lambda r: r["triggers"].__setitem__("data_drift", {"share": 1.5}), "triggers.data_drift.share"),
        (lambda r: r["model"].__setitem__("estimator", "Ridge"), "model.estimator"),
        (lambda r: r["data"].pop("target"), "missing required key 'data.target'"),
    ],
    ids=[
        "task",
        "negative-cooldown",
        "duration",
        "metric",
        "floor-metric",
        "cron-words",
        "cron-4-fields",
        "share>1",
        "estimator-not-dotted",
        "missing-target",
    ],
)
def test_bad_values_raise_config_error_naming_the_problem(tmp_path, raw, mutate, expected):
    mutate(raw)
    path = write(tmp_path, raw)

    with pytest.raises(ConfigError) as exc:
        load_config(path)

    assert expected in str(exc.value)
    assert str(path) in str(exc.value)


def test_name_must_match_file_name(tmp_path, raw):
    path = write(tmp_path, raw, name="bikes")

    with pytest.raises(ConfigError, match=r"name 'bikeshare' must match the file name 'bikes'"):
        load_config(path)


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")

    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_non_mapping_top_level_is_rejected():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["name", "bikeshare"], "list.yaml")


def test_cli_validate_config_ok(capsys):
    rc = cli_main(["validate-config", str(SHIPPED)])

    out = capsys.readouterr().out
    assert rc == 0
    assert "OK" in out and "'bikeshare'" in out


def test_cli_validate_config_unknown_key(tmp_path, raw, capsys):
    raw["triggers"]["cooldown_batchez"] = 3
    path = write(tmp_path, raw)

    rc = cli_main(["validate-config", str(path)])

    err = capsys.readouterr().err
    assert rc != 0
    assert "triggers.cooldown_batchez" in err


def test_cli_entry_point_subprocess(tmp_path, raw):
    good = subprocess.run(
        [str(RETRAINER_BIN), "validate-config", str(SHIPPED)], capture_output=True, text=True, timeout=60
    )
    raw["triggers"]["cooldown_batchez"] = 3
    bad_path = write(tmp_path, raw)

    bad = subprocess.run(
        [str(RETRAINER_BIN), "validate-config", str(bad_path)], capture_output=True, text=True, timeout=60
    )

    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    assert bad.returncode != 0
    assert "triggers.cooldown_batchez" in bad.stderr
    assert str(bad_path) in bad.stderr


def test_fingerprint_tracks_model_params_not_description(raw):
    base = parse_config(raw)
    described = copy.deepcopy(raw)
    described["description"] = "a completely different description"
    tuned = copy.deepcopy(raw)
    tuned["model"]["params"]["learning_rate"] = 0.05

    assert parse_config(described).fingerprint == base.fingerprint
    assert parse_config(tuned).fingerprint != base.fingerprint
    assert parse_config(copy.deepcopy(raw)).fingerprint == base.fingerprint  # deterministic


def test_fingerprint_ignores_triggers_and_schedule(raw):
    base = parse_config(raw)
    other = copy.deepcopy(raw)
    other["triggers"]["cooldown_batches"] = 5
    other["schedule"] = "@daily"

    assert parse_config(other).fingerprint == base.fingerprint


def test_alerts_and_approval_settings(tmp_path, raw):
    raw["promotion"] = {"mode": "approval", "approval_timeout": "90S", "approvers": ["alice"]}
    raw["alerts"] = {"channels": [{"type": "smtp", "to": ["a@example.test"]}], "events": ["promotion"]}

    cfg = load_config(write(tmp_path, raw))

    assert cfg.promotion.approval_timeout_seconds == 90 and cfg.promotion.approvers == ["alice"]
    assert cfg.alerts.events == ["promotion"] and cfg.alerts.channels[0].to == ["a@example.test"]
    default = load_config(write(tmp_path, {k: v for k, v in raw.items() if k not in ("alerts", "promotion")}))
    assert default.promotion.approval_timeout_seconds == 24 * 3600
    assert default.alerts.channels == [] and "task_failed" in default.alerts.events


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ({"channels": [{"type": "smtp"}]}, "needs `to`"),
        ({"events": ["promoted"]}, "alerts.events"),
        ({"channels": [{"type": "pager"}]}, "alerts.channels"),
    ],
)
def test_bad_alerts_are_config_errors(tmp_path, raw, alerts, expected):
    raw["alerts"] = alerts

    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, raw))


def test_bad_approval_timeout_is_a_config_error(tmp_path, raw):
    raw["promotion"] = {"mode": "approval", "approval_timeout": "1 day"}

    with pytest.raises(ConfigError, match="approval_timeout"):
        load_config(write(tmp_path, raw))


def test_min_labelled_rows_follows_small_batches_unless_set():
    from retrainer.config import parse_config

    base = {
        "name": "m",
        "task": "regression",
        "data": {"time_column": "ts", "target": "y", "features": ["a"], "min_batch_rows": 7},
        "model": {"estimator": "sklearn.linear_model.Ridge"},
    }
    assert parse_config(base).triggers.performance.min_labelled_rows == 7
    alt = parse_config({**base, "backtest": {"alternatives": {"x": {"cooldown_batches": 1}}}})
    assert alt.alternative_triggers()["x"].performance.min_labelled_rows == 7
    set_ = parse_config({**base, "triggers": {"performance": {"min_labelled_rows": 30}}})
    assert set_.triggers.performance.min_labelled_rows == 30
    unset_batch = parse_config({**base, "data": {**base["data"], "min_batch_rows": 1}})
    assert unset_batch.triggers.performance.min_labelled_rows == 1
    no_batch = {**base, "data": {k: v for k, v in base["data"].items() if k != "min_batch_rows"}}
    assert parse_config(no_batch).triggers.performance.min_labelled_rows == 20
