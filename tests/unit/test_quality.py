"""The Great Expectations quality gate, run for real on slices of the Bikeshare data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrainer.exceptions import DataValidationError
from retrainer.gates import quality

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def reference(bikeshare_weeks):
    return bikeshare_weeks[1][1]


@pytest.fixture(scope="module")
def expectations(bikeshare_cfg, reference):
    return quality.build_expectations(bikeshare_cfg, reference)


@pytest.fixture
def week(bikeshare_weeks):
    return bikeshare_weeks[2][1].copy()


def failure_for(exc: DataValidationError, column: str | None) -> list[dict]:
    return [f for f in exc.failures if f["column"] == column]


def test_build_expectations_cover_config(bikeshare_cfg, expectations):
    kinds = {(e.kind, e.column) for e in expectations}

    assert ("row_count", None) in kinds
    for f in bikeshare_cfg.data.feature_names:
        assert ("exists", f) in kinds and ("not_null", f) in kinds
    temp = next(e for e in expectations if e.kind == "between" and e.column == "temp")
    assert temp.kwargs["min_value"] == 0 and temp.kwargs["max_value"] == 1
    cats = next(e for e in expectations if e.kind == "in_set" and e.column == "weathersit")
    assert "clear" in cats.kwargs["value_set"]
    assert ("exists", "bikers") not in kinds  # the target is only required for training snapshots
    assert ("exists", "bikers") in {
        (e.kind, e.column) for e in quality.build_expectations(bikeshare_cfg, None, require_target=True)
    }


def test_reference_range_used_when_bounds_undeclared(bikeshare_cfg):
    import pandas as pd

    cfg = bikeshare_cfg.model_copy(
        update={
            "data": bikeshare_cfg.data.model_copy(
                update={
                    "features": [
                        bikeshare_cfg.data.features[0].model_copy(
                            update={"name": "load", "min": None, "max": None}
                        )
                    ]
                }
            )
        }
    )
    ref = pd.DataFrame({"load": [10.0, 20.0]})

    exps = quality.build_expectations(cfg, ref)

    between = next(e for e in exps if e.kind == "between")
    # range 10..20 widened by range_tolerance (0.5) of the span (10) on each side
    assert (between.kwargs["min_value"], between.kwargs["max_value"]) == (5.0, 25.0)


def test_clean_week_passes(week, expectations):
    result = quality.validate(week, expectations, name="clean")

    assert result["success"] is True
    assert result["failures"] == []
    assert result["statistics"]["evaluated_expectations"] == len(expectations)


def test_missing_column(week, expectations):
    df = week.drop(columns=["temp"])

    with pytest.raises(DataValidationError) as exc:
        quality.validate(df, expectations, name="missing")

    assert failure_for(exc.value, "temp")
    assert any(f["expectation"] == "expect_column_to_exist" for f in failure_for(exc.value, "temp"))
    assert "column 'temp'" in str(exc.value) and "column is missing" in str(exc.value)
    assert not [f for f in exc.value.failures if f["column"] not in ("temp",)]  # nothing else blamed


def test_numeric_column_of_strings(week, expectations):
    df = week.assign(hum=week["hum"].map(lambda v: f"{v:.2f}"))

    with pytest.raises(DataValidationError) as exc:
        quality.validate(df, expectations, name="strings")

    kinds = {f["expectation"] for f in failure_for(exc.value, "hum")}
    assert "expect_column_values_to_be_in_type_list" in kinds
    assert "column 'hum'" in str(exc.value) and "in type list" in str(exc.value)


def test_out_of_range_values_beyond_mostly(week, expectations):
    df = week.copy()
    df.loc[df.index[:10], "windspeed"] = 3.0  # ~6% of rows > max 1, more than 1 - mostly (1%)

    with pytest.raises(DataValidationError) as exc:
        quality.validate(df, expectations, name="range")

    (fail,) = failure_for(exc.value, "windspeed")
    assert fail["expectation"] == "expect_column_values_to_be_between"
    assert fail["unexpected_count"] == 10
    assert 3.0 in fail["partial_unexpected_list"]
    assert "column 'windspeed'" in str(exc.value) and "10 unexpected" in str(exc.value)


def test_out_of_range_within_mostly_passes(week, expectations):
    df = week.copy()
    df.loc[df.index[:1], "windspeed"] = 3.0  # 1 of ~155 rows: under 1 - mostly

    result = quality.validate(df, expectations, name="range_ok")

    assert result["success"] is True


def test_unknown_category(week, expectations):
    df = week.copy()
    df.loc[df.index[:8], "weathersit"] = "tornado"

    with pytest.raises(DataValidationError) as exc:
        quality.validate(df, expectations, name="category")

    (fail,) = failure_for(exc.value, "weathersit")
    assert fail["expectation"] == "expect_column_values_to_be_in_set"
    assert fail["partial_unexpected_list"][0] == "tornado"
    assert "column 'weathersit'" in str(exc.value) and "tornado" in str(exc.value)


def test_nulls(week, expectations):
    df = week.copy()
    df.loc[df.index[:3], "atemp"] = np.nan

    with pytest.raises(DataValidationError) as exc:
        quality.validate(df, expectations, name="nulls")

    (fail,) = failure_for(exc.value, "atemp")
    assert fail["expectation"] == "expect_column_values_to_not_be_null"
    assert fail["unexpected_count"] == 3
    assert "column 'atemp'" in str(exc.value) and "not be null" in str(exc.value)


def test_empty_frame(week, expectations):
    df = week.iloc[0:0]

    with pytest.raises(DataValidationError) as exc:
        quality.validate(df, expectations, name="empty")

    (fail,) = failure_for(exc.value, None)
    assert fail["expectation"] == "expect_table_row_count_to_be_between"
    assert fail["observed_value"] == 0
    assert "table: table row count to be between" in str(exc.value) and "observed 0" in str(exc.value)


def test_raise_on_failure_false_returns_failures(week, expectations):
    df = week.iloc[:5]  # fewer than min_batch_rows (24)

    result = quality.validate(df, expectations, name="short", raise_on_failure=False)

    assert result["success"] is False
    assert [f["expectation"] for f in result["failures"]] == ["expect_table_row_count_to_be_between"]


def test_docs_dir_gets_json_result_and_data_docs(tmp_path, week, expectations):
    df = week.copy()
    df.loc[df.index[:8], "weathersit"] = "tornado"

    with pytest.raises(DataValidationError) as exc:
        quality.validate(df, expectations, name="docs", docs_dir=tmp_path / "gx")

    result_path = tmp_path / "gx" / "docs.json"
    assert exc.value.report == str(result_path)
    saved = json.loads(result_path.read_text())
    assert saved["summary"]["success"] is False
    assert saved["summary"]["failures"][0]["column"] == "weathersit"
    assert (tmp_path / "gx" / "docs" / "index.html").is_file()
