"""Quality gate: a Great Expectations 1.x suite derived from the config and the reference data.

The suite checks that every configured column is present with the right kind of dtype, has no nulls
(unless declared nullable), numeric values sit inside declared bounds (or the reference range widened by
``validation.range_tolerance``), categorical values are known, and the batch is not empty. A failure
saves the full result and Data Docs under ``reports/<model>/gx/`` first, then raises
:class:`DataValidationError` carrying the failed expectations.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import DataValidationError

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)

NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int64",
    "Int32",
    "Float64",
]
# GX 1.x matches a column's dtype against these by numpy / pandas class name: "StringDtype" is what
# accepts a pandas ``string`` column ("string" alone matches nothing there)
CATEGORICAL_TYPES = [
    "object",
    "str",
    "string",
    "category",
    "StringDtype",
    "bool",
    "boolean",
    "int64",
    "Int64",
]


@dataclass(frozen=True)
class Expectation:
    """A backend-neutral description of one expectation (kept so tests and reports can read it)."""

    kind: str
    column: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def build_expectations(
    cfg: ModelConfig, reference: pd.DataFrame | None = None, *, require_target: bool = False
) -> list[Expectation]:
    """Expectations for a batch (``require_target=False``) or a training snapshot (``True``)."""
    v = cfg.validation
    exps = [Expectation("row_count", kwargs={"min_value": cfg.data.min_batch_rows})]
    exps.append(Expectation("exists", cfg.data.time_column))
    exps.append(Expectation("not_null", cfg.data.time_column))
    for f in cfg.data.features:
        exps.append(Expectation("exists", f.name))
        if not f.nullable:
            exps.append(Expectation("not_null", f.name))
        if f.type == "numeric":
            exps.append(Expectation("types", f.name, {"type_list": NUMERIC_TYPES}))
            lo, hi = f.min, f.max
            if (lo is None or hi is None) and reference is not None and f.name in reference:
                col = reference[f.name].dropna()
                if len(col):
                    span = float(col.max() - col.min()) or abs(float(col.max())) or 1.0
                    lo = lo if lo is not None else float(col.min()) - v.range_tolerance * span
                    hi = hi if hi is not None else float(col.max()) + v.range_tolerance * span
            if lo is not None or hi is not None:
                exps.append(
                    Expectation("between", f.name, {"min_value": lo, "max_value": hi, "mostly": v.mostly})
                )
        else:
            exps.append(Expectation("types", f.name, {"type_list": CATEGORICAL_TYPES}))
            cats = f.categories
            if cats is None and reference is not None and f.name in reference:
                cats = sorted(str(c) for c in reference[f.name].dropna().unique())
            if cats:
                exps.append(Expectation("in_set", f.name, {"value_set": list(cats), "mostly": v.mostly}))
    if require_target:
        exps.append(Expectation("exists", cfg.data.target))
        exps.append(Expectation("not_null", cfg.data.target))
    elif cfg.data.id_column:  # a batch: late labels and flags join on its row ids
        exps.append(Expectation("exists", cfg.data.id_column))
        exps.append(Expectation("not_null", cfg.data.id_column))
        exps.append(Expectation("unique", cfg.data.id_column))
    return exps


def _to_gx(e: Expectation) -> Any:
    import great_expectations.expectations as gxe

    if e.kind == "row_count":
        return gxe.ExpectTableRowCountToBeBetween(**e.kwargs)
    if e.column is None:
        raise ValueError(f"expectation {e.kind} needs a column")
    if e.kind == "exists":
        return gxe.ExpectColumnToExist(column=e.column)
    if e.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=e.column)
    if e.kind == "types":
        return gxe.ExpectColumnValuesToBeInTypeList(column=e.column, **e.kwargs)
    if e.kind == "between":
        return gxe.ExpectColumnValuesToBeBetween(column=e.column, **e.kwargs)
    if e.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=e.column, **e.kwargs)
    if e.kind == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=e.column)
    raise ValueError(f"unknown expectation kind {e.kind}")


def _summarise(result: dict[str, Any]) -> dict[str, Any]:
    """One failed expectation as a small, readable dict (no tracebacks)."""
    cfg = result["expectation_config"]
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    res = result.get("result") or {}
    exc = result.get("exception_info") or {}
    if exc and "raised_exception" not in exc:  # GX nests exception info per metric
        exc = next(iter(exc.values()), {})
    out: dict[str, Any] = {"expectation": cfg["type"], "column": kwargs.pop("column", None), "kwargs": kwargs}
    for key in ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list"):
        if key in res and res[key] not in (None, []):
            out[key] = res[key][:5] if key == "partial_unexpected_list" else res[key]
    if exc.get("raised_exception"):
        out["error"] = exc.get("exception_message")
    return out


def describe(failure: dict[str, Any]) -> str:
    """A one-line human description of a summarised failure."""
    col = f"column '{failure['column']}'" if failure.get("column") else "table"
    what = failure["expectation"].removeprefix("expect_").replace("_", " ")
    detail = ""
    if "error" in failure and "does not exist" in str(failure["error"]):
        detail = "column is missing"
    elif "unexpected_count" in failure:
        detail = f"{failure['unexpected_count']} unexpected ({failure.get('unexpected_percent', 0):.1f}%), e.g. {failure.get('partial_unexpected_list')}"
    elif "observed_value" in failure:
        detail = f"observed {failure['observed_value']!r}"
    elif "error" in failure:
        detail = str(failure["error"])[:160]
    return f"{col}: {what} {failure['kwargs'] or ''} -> {detail}".replace(" {} ", " ")


EVIDENCE_VALUES = 20  # failing values kept per failed expectation: evidence stays small on any batch size


def _gx_frame(df: pd.DataFrame, expectations: list[Expectation]) -> pd.DataFrame:
    """The frame GX validates: only the columns the expectations name, string columns as ``string``.

    GX copies the whole frame for every row-level expectation (its null filter), so extra columns cost
    rows x columns x expectations. A categorical column whose non-null values are all strings is handed
    over with pandas' ``string`` dtype: GX then checks its type from the dtype, where for an ``object``
    column it calls ``isinstance`` on every value in Python. The verdict is the same (every value is a
    string either way); a column that mixes types stays ``object`` and is checked value by value.
    """
    import pandas as pd

    wanted = [e.column for e in expectations if e.column is not None and e.column in df.columns]
    columns = list(dict.fromkeys(wanted)) if wanted else list(df.columns)
    categorical = {
        e.column
        for e in expectations
        if e.column is not None and e.kind == "types" and e.kwargs.get("type_list") == CATEGORICAL_TYPES
    }
    out: dict[str, Any] = {}
    for c in columns:
        col = df[c]
        strings = c in categorical and col.dtype == object
        if strings and pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty"):
            col = col.astype("string")
        out[c] = col
    # built in one copy, one block per dtype (cheap row filters); the caller's frame is never changed
    return pd.DataFrame(out, index=df.index)


def _key(config: dict[str, Any]) -> str:
    """An expectation's identity in a result: its type and arguments."""
    kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
    return json.dumps([config["type"], kwargs], sort_keys=True, default=str)


def _run_suite(
    ctx: Any, name: str, expectations: list[Any], df: pd.DataFrame, result_format: Any, actions: list[Any]
) -> Any:
    import great_expectations as gx

    batch_def = (
        ctx.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("all")
    )
    # the suite is built with its expectations and added once (adding them one by one re-serialises
    # the whole suite each time: quadratic in the number of expectations)
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch_def, suite=suite)
    )
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}_checkpoint",
            validation_definitions=[vd],
            actions=actions,
            result_format=result_format,
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": df})
    return next(iter(run.run_results.values()))


def _context(docs_dir: Path | None) -> tuple[Any, list[Any]]:
    """An ephemeral GX context, with a Data Docs site under ``docs_dir/docs`` and its update action
    when ``docs_dir`` is given."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    ctx = gx.get_context(mode="ephemeral")
    actions = []
    if docs_dir is not None:
        ctx.add_data_docs_site(
            site_name="retrainer",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir / "docs"),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(UpdateDataDocsAction(name="docs", site_names=["retrainer"]))
    return ctx, actions


def _add_evidence(
    ctx: Any,
    name: str,
    expectations: list[Expectation],
    frame: pd.DataFrame,
    payload: dict[str, Any],
    actions: list[Any],
) -> None:
    """Re-run the failed expectations of ``payload`` with ``BASIC`` results (at most
    :data:`EVIDENCE_VALUES` failing values each) and put those results in place of the verdicts."""
    failed_at = [i for i, r in enumerate(payload["results"]) if not r["success"]]
    if not failed_at:
        return
    by_key = {_key(_to_gx(e).configuration.to_json_dict()): e for e in expectations}
    failed = [by_key[_key(payload["results"][i]["expectation_config"])] for i in failed_at]
    evidence = _run_suite(
        ctx,
        f"{name}_failed",
        [_to_gx(e) for e in failed],
        frame,
        {"result_format": "BASIC", "partial_unexpected_count": EVIDENCE_VALUES},
        actions,
    ).to_json_dict()["results"]
    detailed = {_key(r["expectation_config"]): r for r in evidence}
    for i in failed_at:  # GX orders results its own way: match them by expectation
        key = _key(payload["results"][i]["expectation_config"])
        payload["results"][i] = detailed.get(key, payload["results"][i])


def _save(out: dict[str, Any], payload: dict[str, Any], docs_dir: Path, name: str) -> None:
    """Write the summary and the full result to ``docs_dir/<name>.json``; note it and the Data Docs."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    path = docs_dir / f"{name}.json"
    path.write_text(json.dumps({"summary": out, "result": payload}, indent=2, default=str))
    out["result_path"] = str(path)
    out["docs"] = str(docs_dir / "docs" / "index.html")


def validate(
    df: pd.DataFrame,
    expectations: list[Expectation],
    *,
    name: str,
    docs_dir: Path | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """Run the expectations on ``df`` with Great Expectations; save results; raise on failure.

    Two passes keep the cost at what the checks cost: every expectation runs with GX's ``BOOLEAN_ONLY``
    result format (counts and verdicts, no per-row lists); only when some fail are those re-run with
    ``BASIC`` to collect evidence: counts, percentages and at most :data:`EVIDENCE_VALUES` failing values
    each. Returns ``{"success", "failures", "statistics", "result_path", "docs"}``.
    """
    ctx, actions = _context(docs_dir)
    frame = _gx_frame(df, expectations)
    gx_expectations = [_to_gx(e) for e in expectations]
    result = _run_suite(ctx, name, gx_expectations, frame, "BOOLEAN_ONLY", actions)
    payload = result.to_json_dict()
    _add_evidence(ctx, name, expectations, frame, payload, actions)
    failures = [_summarise(r) for r in payload["results"] if not r["success"]]
    out: dict[str, Any] = {
        "success": bool(result.success),
        "failures": failures,
        "statistics": payload.get("statistics", {}),
        "result_path": None,
        "docs": None,
    }
    if docs_dir is not None:
        _save(out, payload, docs_dir, name)
    log.info(
        "GX %s: %s (%d of %d expectations failed)",
        name,
        "passed" if out["success"] else "FAILED",
        len(failures),
        len(payload["results"]),
    )
    if not out["success"] and raise_on_failure:
        lines = "\n".join(f"  - {describe(f)}" for f in failures)
        raise DataValidationError(
            f"{name}: {len(failures)} expectation(s) failed:\n{lines}",
            failures=failures,
            report=out["result_path"],
        )
    return out
