"""`data`: the columns of a batch, its features and how gaps in nullable features are filled."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from retrainer.config.schema.base import Duration, _Strict


class FeatureSpec(_Strict):
    """One input column. A bare name in `data.features` is a numeric feature without bounds. Bounds and
    categories, when given, become expectations in the quality gate."""

    name: str = Field(description="column name in the batches")
    type: Literal["numeric", "categorical"] = Field(
        "numeric",
        description="numeric features are scaled (`model.scale_numeric`), categorical ones one-hot encoded",
    )
    min: float | None = Field(
        None, description="numeric: smallest valid value (a gate expectation, see `validation.mostly`)"
    )
    max: float | None = Field(
        None, description="numeric: largest valid value (a gate expectation, see `validation.mostly`)"
    )
    categories: list[str] | None = Field(
        None,
        description="categorical: the valid values; unseen categories fail the gate (see `validation.mostly`)",
    )
    nullable: bool = Field(
        False,
        description="may be missing in some or all rows of a batch; gaps are filled by `data.impute`. "
        "A feature that is not nullable must never be null (the gate rejects such batches)",
    )


class ImputeConfig(_Strict):
    """How missing values of ``nullable`` features are filled before the estimator sees them (features
    that are not nullable are never null: the quality gate rejects such batches)."""

    numeric: Literal["median", "mean", "constant"] = Field(
        "median", description="how gaps of nullable numeric features are filled"
    )
    numeric_fill: float = Field(0.0, description="the value used when `numeric` is `constant`")
    categorical: Literal["most_frequent", "constant"] = Field(
        "constant", description="how gaps of nullable categorical features are filled"
    )
    categorical_fill: str = Field("missing", description="the category used when `categorical` is `constant`")
    add_indicator: bool = Field(
        False, description="also give the model a was-missing column for each nullable feature"
    )


def _name_or_feature(schema: dict[str, Any]) -> None:
    """JSON Schema of `data.features`: each item is a bare column name or a feature mapping."""
    schema["items"] = {"anyOf": [{"type": "string", "description": "a numeric feature"}, schema["items"]]}


class DataConfig(_Strict):
    """The columns of a batch: time, target, features and (optionally) a row id."""

    time_column: str = Field(description="timestamp column; batches and training windows are ordered by it")
    target: str = Field(
        description="label column; it may be missing or null in a batch (labels often arrive late)"
    )
    features: list[FeatureSpec] = Field(
        description="the model's inputs: column names (numeric) or mappings (see `data.features[]`)",
        json_schema_extra=_name_or_feature,
    )
    id_column: str | None = Field(
        None,
        description="row id, unique across batches; required by the labels and flags feeds (late labels and "
        "flags join on it). When set, the batch gate also checks that the column exists, is non-null "
        "and unique",
    )
    min_batch_rows: int = Field(1, ge=1, description="a batch with fewer rows fails the quality gate")
    max_future: Duration = Field(
        "1D",
        description="rows timed later than now + this are quarantined (an allowance for clock skew; such "
        "a row would otherwise anchor every later training window)",
    )
    max_batch_span: Duration | None = Field(
        None,
        description="a batch whose rows span more than this (newest minus oldest time) is quarantined: "
        "one mis-stamped row would otherwise anchor the next training window and leave the rest of the "
        "archive outside it. Default (null): `training.window`",
    )
    impute: ImputeConfig = Field(
        default_factory=ImputeConfig, description="how gaps of `nullable` features are filled"
    )

    @field_validator("features", mode="before")
    @classmethod
    def _names_are_numeric_features(cls, value: Any) -> Any:
        if isinstance(value, list):  # a bare name is a numeric feature with no declared bounds
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _distinct_columns(self) -> DataConfig:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {dupes}")
        for special in (self.time_column, self.target):
            if special in names:
                raise ValueError(f"{special!r} is the time column or target and cannot also be a feature")
        if self.id_column is not None and self.id_column in {*names, self.time_column, self.target}:
            raise ValueError(
                f"id_column {self.id_column!r} must be its own column, not a feature/time/target"
            )
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def nullable(self) -> set[str]:
        return {f.name for f in self.features if f.nullable}
