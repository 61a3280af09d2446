"""Feeds that arrive after their batch: labels and human flags.

In production the truth and people's flags come days after the predictions, as files of their own::

    landing/<model>/labels/*.csv|*.parquet   rows: <data.id_column>, <data.target>
    landing/<model>/flags/*.csv|*.parquet    rows: <data.id_column> [, reason]

:func:`ingest` (run by every monitor run before its performance and flag signals, and by every retrain
before its snapshot) turns each landed file into a *delivery*: its rows are kept under
``state/<model>/feeds/<kind>/`` and the file moves to ``archive/<model>/<kind>/``. The delivery contract is
the batches': producers write elsewhere and rename into the folder; names starting with ``.`` or ending
in ``.tmp``/``.part`` are never read. A file with identical content to one already ingested, or one that
cannot be used (unreadable, no id or label column, empty ids or labels, conflicting labels for one id,
another format), goes to ``quarantine/<model>/<kind>/`` with a ``.reason.json``; nothing is deleted.

Labels are joined by id to the archived batches: training (:func:`apply_labels`, used by
:func:`retrainer.ml.train.gather_window`) uses every row whose label has arrived by snapshot time (a later
label for the same id corrects an earlier one), so the snapshot's content hash changes when labels join
and stays the same when nothing new arrived. The performance signal of a monitor run scores the labels
that matured since the previous run against the predictions stored for the batch they belong to
(:func:`label_step`); each label is scored once, at the run that first sees it. Labels for ids not yet in
any batch wait until that batch arrives. Flags count towards the batch they refer to (:func:`flag_step`).

The rule for which matured labels make the performance signal is :func:`performance_signal`, the same
code the backtest uses for its ``label_delay_batches``: only predictions made by the current champion
are judged (a label for a batch predicted by a previous champion says nothing about the current one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrainer import policy
from retrainer.ml import metrics
from retrainer.stages.feedstore import (
    ID,
    KINDS,
    VALUE,
    FeedStore,
    apply_labels,
    id_index,
    ingest,
    label_filler,
    latest_labels,
    normalise_ids,
    require_id_column,
)
from retrainer.storage import DataRoot, read_parquet, write_parquet

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.config import ModelConfig

__all__ = [
    "ID",
    "KINDS",
    "PROBA",
    "VALUE",
    "FeedStore",
    "Matured",
    "apply_labels",
    "due_batch",
    "flag_step",
    "id_index",
    "ingest",
    "label_filler",
    "label_step",
    "latest_labels",
    "normalise_ids",
    "performance_signal",
    "proba_columns",
    "require_id_column",
    "stored_proba",
]

log = logging.getLogger(__name__)


# -- the shared label-delay rule (monitor and backtest) ----------------------------------------------------
@dataclass(frozen=True)
class Matured:
    """Labels that became known at one step, for the predictions of one batch."""

    batch: str
    predicted_by: str | None  # the model that made the stored predictions (e.g. "v3", "upto-12")
    y: np.ndarray
    pred: np.ndarray
    batches_late: int = 0  # steps between the batch's own step and the step its labels arrived at
    proba: np.ndarray | None = None  # class probabilities (rows x classes), when stored
    classes: list[str] | None = None  # their classes, as text (column names of the stored predictions)


PROBA = "proba:"  # prefix of the stored class-probability columns (``proba:<class>``)


def proba_columns(df: pd.DataFrame) -> list[str]:
    """The stored class-probability columns of a predictions frame, in class order."""
    return [c for c in df.columns if str(c).startswith(PROBA)]


def stored_proba(df: pd.DataFrame) -> tuple[np.ndarray | None, list[str] | None]:
    """(probabilities, classes as text) from a frame's ``proba:<class>`` columns; (None, None) without
    them or when any is missing."""
    cols = proba_columns(df)
    if not cols or df[cols].isna().to_numpy().any():
        return None, None
    return df[cols].to_numpy(dtype=float), [c[len(PROBA) :] for c in cols]


def due_batch(step: int, label_delay_batches: int) -> int:
    """The batch whose labels arrive at ``step`` when labels come ``label_delay_batches`` late (backtest)."""
    return step - label_delay_batches


def performance_signal(cfg: ModelConfig, matured: list[Matured], champion_id: str | None) -> dict[str, Any]:
    """The performance signal of one step from the labels that matured at it.

    Only the current champion's own predictions are judged; the rest is listed as not scored. Returns the
    metric (``value``, ``all``), ``labelled_rows``, the per-row ``errors`` for the change detector (None
    without rows) and ``batches``: per batch, rows, lateness and whether it was scored.
    """
    import numpy as np

    used = [m for m in matured if m.predicted_by == champion_id and len(m.y)]
    y = np.concatenate([np.asarray(m.y) for m in used]) if used else np.array([])
    p = np.concatenate([np.asarray(m.pred) for m in used]) if used else np.array([])
    values = metrics.compute(cfg.task, y, p, custom=metrics.custom(cfg)) if len(y) else {}
    classes = used[0].classes if used else None
    if len(y) and classes and all(m.proba is not None and m.classes == classes for m in used):
        # the probability metrics, classes compared as text (the stored columns' names)
        proba = np.concatenate([np.asarray(m.proba) for m in used])
        values.update(metrics.probability_metrics(y.astype(str), proba, classes))
    batches = [
        {
            "batch": m.batch,
            "rows": len(m.y),
            "batches_late": m.batches_late,
            "predicted_by": m.predicted_by,
            "scored": m.predicted_by == champion_id,
        }
        for m in matured
        if len(m.y)
    ]
    return {
        "value": values.get(cfg.metric),
        "all": values,
        "labelled_rows": len(y),
        "errors": policy.error_stream(cfg.task, y, p) if len(y) else None,
        "batches": batches,
    }


# -- one monitor step ------------------------------------------------------------------------------------
def _predictions(dr: DataRoot, batch: str, version: Any) -> tuple[pd.DataFrame | None, str | None, float]:
    """The stored predictions of ``batch`` by champion ``version`` (or, if none, the model that made the
    newest stored ones), as (frame, model id, mtime)."""

    mine = dr.batch_predictions(batch, version)
    if mine.exists():
        return read_parquet(mine), f"v{version}", mine.stat().st_mtime
    others = dr.all_batch_predictions(batch)
    if others:
        return None, others[-1].name.rsplit(".", 2)[-2], others[-1].stat().st_mtime
    return None, None, 0.0


def label_step(
    cfg: ModelConfig, claim: dict[str, Any], current: pd.DataFrame, version: Any
) -> tuple[list[Matured], dict[str, Any]]:
    """The labels this monitor step sees: the batch's own (and already delivered) labels, and late labels
    for earlier batches scored against those batches' stored predictions. Written once per step
    (``steps/<batch sha256>.parquet``): a re-run of the step returns the same rows."""

    store = FeedStore(cfg, "labels")
    path = store.step_path(claim["sha256"])
    id_col = require_id_column(cfg)
    with store.lock():
        if not path.exists():
            rows = _build_label_step(cfg, store, claim, current, version)
            write_parquet(path, rows)
        rows = read_parquet(path)
    matured = []
    for batch, part in rows.groupby("batch", sort=False):
        proba, classes = stored_proba(part)
        matured.append(
            Matured(
                batch=str(batch),
                predicted_by=part["predicted_by"].iloc[0],
                y=part["y"].to_numpy(),
                pred=part["prediction"].to_numpy(),
                batches_late=int(part["batches_late"].iloc[0]),
                proba=proba,
                classes=classes,
            )
        )
    late = rows[rows["batches_late"] > 0]
    champion = f"v{version}"
    summary = {
        "late_labelled_rows": int((late["predicted_by"] == champion).sum()),  # scored ones
        "late_labels": [
            {
                "batch": b,
                "rows": len(g),
                "batches_late": int(g["batches_late"].iloc[0]),
                "hours_late": _hours(g["hours_late"]),
                "predicted_by": g["predicted_by"].iloc[0],
                "scored": g["predicted_by"].iloc[0] == champion,
                "deliveries": sorted(set(g["delivery"].dropna())),
            }
            for b, g in late.groupby("batch", sort=False)
        ],
        "waiting_labels": _waiting(cfg, store, claim, current, id_col),
        "label_deliveries": [
            d["file"] for d in store.index() if d["ingested_by"] == f"monitor:{claim['sha256']}"
        ],
    }
    return matured, summary


def _hours(values: pd.Series) -> float | None:
    """The longest delay in hours (None when unknown: no stored predictions to date it from)."""
    known = values.dropna()
    return round(float(known.max()), 3) if len(known) else None


def _waiting(
    cfg: ModelConfig, store: FeedStore, claim: dict[str, Any], current: pd.DataFrame, id_col: str
) -> int:
    """Delivered labels not yet matched to any processed batch (their batch has not arrived yet)."""
    rows = store.rows()
    if rows.empty:
        return 0
    known = set(id_index(cfg, store.dr)[ID]) | set(normalise_ids(current[id_col]))
    return int((~rows[ID].isin(known)).sum())


def _build_label_step(
    cfg: ModelConfig, store: FeedStore, claim: dict[str, Any], current: pd.DataFrame, version: Any
) -> pd.DataFrame:
    """The rows of one label step: the batch in hand's own labels (or delivered labels waiting for it),
    then late labels for earlier, archived batches; each id is scored once."""
    import pandas as pd

    used = store.used_ids(exclude=claim["sha256"])
    first = store.rows().drop_duplicates(ID, keep="first").set_index(ID)  # each id is scored once
    fresh = first[~first.index.isin(used)]
    cur_ids = normalise_ids(current[require_id_column(cfg)])
    parts = [
        *_own_labels(cfg, claim, current, cur_ids, fresh, used, version),
        *_late_labels(cfg, store, claim, fresh[~fresh.index.isin(set(cur_ids))], version),
    ]
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=object)
                for c in [ID, "batch", "y", "prediction", "predicted_by", "delivery", "arrived_at"]
            }
            | {"batches_late": pd.Series(dtype=int), "hours_late": pd.Series(dtype=float)}
        )
    out = pd.concat(parts, ignore_index=True)
    out[ID] = out[ID].astype(str)
    for c in ("predicted_by", "delivery", "arrived_at"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def _own_labels(
    cfg: ModelConfig,
    claim: dict[str, Any],
    current: pd.DataFrame,
    cur_ids: pd.Series,
    fresh: pd.DataFrame,
    used: set[str],
    version: Any,
) -> list[pd.DataFrame]:
    """The batch in hand: its own labels, else delivered labels that were waiting for it."""
    import pandas as pd

    target = cfg.data.target
    own = current[target].reset_index(drop=True) if target in current else pd.Series([None] * len(current))
    from_feed = cur_ids.map(fresh[VALUE]) if len(fresh) else pd.Series([None] * len(current))
    y = own.where(own.notna(), from_feed)
    mask = y.notna() & ~cur_ids.isin(used)
    if not mask.any():
        return []
    rows = current.reset_index(drop=True)
    return [
        pd.DataFrame(
            {
                ID: cur_ids[mask],
                "batch": claim["batch"],
                "y": y[mask].to_numpy(),
                "prediction": rows["prediction"][mask].to_numpy(),
                **{c: rows[c][mask].to_numpy() for c in proba_columns(current)},
                "predicted_by": f"v{version}",
                "delivery": cur_ids[mask].map(fresh["delivery"]).where(own[mask].isna(), None),
                "arrived_at": None,
                "batches_late": 0,
                "hours_late": 0.0,
            }
        )
    ]


def _late_labels(
    cfg: ModelConfig, store: FeedStore, claim: dict[str, Any], late: pd.DataFrame, version: Any
) -> list[pd.DataFrame]:
    """Late labels for earlier, archived batches, against those batches' stored predictions."""
    import numpy as np
    import pandas as pd

    if not len(late):
        return []
    index = id_index(cfg, store.dr)
    index = index[index[ID].isin(late.index)]
    order = [p.name for p in store.dr.archived()]
    here = len(order) if claim["batch"] not in order else order.index(claim["batch"])
    parts = []
    for batch, hits in index.groupby("batch", sort=False):
        preds, model_id, made = _predictions(store.dr, str(batch), version)
        lab = late.loc[hits[ID]]
        arrived = pd.to_datetime(lab["arrived_at"], utc=True)
        hours = ((arrived - pd.Timestamp(made, unit="s", tz="UTC")).dt.total_seconds() / 3600).to_numpy()
        pos = hits["pos"].to_numpy()
        have = preds is not None and len(preds) > hits["pos"].max()
        preds = preds if have else None  # predictions that do not cover these rows are not used
        parts.append(
            pd.DataFrame(
                {
                    ID: hits[ID].to_numpy(),
                    "batch": str(batch),
                    "y": lab[VALUE].to_numpy(),
                    "prediction": preds["prediction"].to_numpy()[pos]
                    if preds is not None
                    else np.full(len(hits), np.nan),
                    **(
                        {c: preds[c].to_numpy()[pos] for c in proba_columns(preds)}
                        if preds is not None
                        else {}
                    ),
                    "predicted_by": model_id if preds is not None else (model_id or "none"),
                    "delivery": lab["delivery"].to_numpy(),
                    "arrived_at": lab["arrived_at"].to_numpy(),
                    "batches_late": max(here - order.index(str(batch)), 1),
                    "hours_late": np.maximum(hours, 0.0) if made else np.full(len(hits), np.nan),
                }
            )
        )
    return parts


def flag_step(
    cfg: ModelConfig,
    claim: dict[str, Any],
    current: pd.DataFrame,
    sidecar_ids: set[str],
    *,
    count_batch: bool = True,
) -> dict[str, Any]:
    """Flags this monitor step counts: the batch's own (sidecar file and flags delivered for its ids) and
    flags arriving late for earlier batches, each counted towards the batch it refers to. The signal is
    the highest flag rate (distinct flagged rows / batch rows, all flags so far) among the batches that
    received flags at this step. Sidecar ids the batch does not have are not counted. With
    ``count_batch=False`` (its sidecar could not be used) the batch's own rate is left out of the signal:
    flags delivered for its rows are kept and count at later steps."""
    import pandas as pd

    store = FeedStore(cfg, "flags")
    path = store.step_path(claim["sha256"])
    id_col = require_id_column(cfg)
    cur_ids = normalise_ids(current[id_col])
    with store.lock():
        if not path.exists():
            used = store.used_ids(exclude=claim["sha256"])
            delivered = store.rows()
            fresh = delivered[~delivered[ID].isin(used)].drop_duplicates(ID, keep="first")
            index = id_index(cfg, store.dr)
            index = index[index["batch"] != claim["batch"]]
            here_ids = set(cur_ids)
            mine = fresh[fresh[ID].isin(here_ids)].assign(batch=claim["batch"])
            late = fresh.merge(index[[ID, "batch"]], on=ID)
            late = late[~late[ID].isin(here_ids)]
            own = (set(sidecar_ids) & here_ids) - set(mine[ID])  # ids the batch does not have never count
            side = pd.DataFrame({ID: sorted(own), "batch": claim["batch"]})
            rows = pd.concat([side, mine, late], ignore_index=True)
            for c in (ID, "batch", "delivery", "arrived_at", "reason"):
                rows[c] = rows[c].astype(object).where(rows[c].notna(), None) if c in rows else None
            write_parquet(path, rows[[ID, "batch", "delivery", "arrived_at", "reason"]])
        step = read_parquet(path)
        every = pd.concat(
            [read_parquet(p, columns=[ID, "batch"]) for p in store.steps.glob("*.parquet")],
            ignore_index=True,
        )
    if not count_batch:
        step = step[step["batch"] != claim["batch"]]
    if step.empty:
        return {"flagged_rate": None, "flagged": 0, "flagged_batches": []}
    order = [p.name for p in store.dr.archived()]
    here = len(order) if claim["batch"] not in order else order.index(claim["batch"])
    index = id_index(cfg, store.dr)
    sizes = index.groupby("batch").size().to_dict()
    sizes[claim["batch"]] = len(current)
    batches = []
    for batch, new in step.groupby("batch", sort=False):
        flagged = every.loc[every["batch"] == batch, ID].nunique()
        rows = max(int(sizes.get(batch, 0)), 1)
        batches.append(
            {
                "batch": batch,
                "new_flags": int(new[ID].nunique()),
                "flagged": int(flagged),
                "rows": rows,
                "rate": flagged / rows,
                "batches_late": 0 if batch == claim["batch"] else max(here - order.index(batch), 1),
            }
        )
    top = max(batches, key=lambda b: b["rate"])
    return {"flagged_rate": top["rate"], "flagged": top["flagged"], "flagged_batches": batches}
