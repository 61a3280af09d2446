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

import contextlib
import fcntl
import functools
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrainer import policy, settings
from retrainer.exceptions import BatchError, ConfigError
from retrainer.ml import metrics
from retrainer.storage import (
    BATCH_SUFFIXES,
    SAFE_NAME,
    DataRoot,
    is_temporary,
    max_batch_bytes,
    read_batch,
    settle_seconds,
    sha256_file,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)
KINDS = ("labels", "flags")
ID, VALUE = "id", "value"


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


# -- the store -----------------------------------------------------------------------------------------
def require_id_column(cfg: ModelConfig) -> str:
    """``data.id_column``, or a :class:`ConfigError` saying the feeds need it."""
    if not cfg.data.id_column:
        raise ConfigError(
            f"{cfg.source or cfg.name}: the labels and flags feeds join on a row id, but data.id_column is "
            "not set: add the column that identifies a row (unique across batches) to data.id_column"
        )
    return cfg.data.id_column


class FeedStore:
    """Deliveries of one feed (``labels`` or ``flags``) of one model, and the monitor steps that used them."""

    def __init__(self, cfg: ModelConfig, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown feed {kind!r}")
        self.cfg, self.kind = cfg, kind
        self.dr = DataRoot(settings.data_root(), cfg.name)
        self.landing = self.dr.landing / kind
        self.archive = self.dr.archive / kind
        self.quarantine = self.dr.quarantine / kind
        self.state = self.dr.feed_state(kind)
        self.steps = self.state / "steps"

    # -- bookkeeping
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time (monitor and retrain runs may ingest concurrently)."""
        self.state.mkdir(parents=True, exist_ok=True)
        with (self.state / ".lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def index(self) -> list[dict[str, Any]]:
        p = self.state / "index.json"
        return json.loads(p.read_text())["deliveries"] if p.exists() else []

    def _save_index(self, deliveries: list[dict[str, Any]]) -> None:
        write_json(self.state / "index.json", {"deliveries": deliveries})

    def rows(self) -> pd.DataFrame:
        """Every delivered row, oldest delivery first (columns ``id``, ``value``/``reason``, ``delivery``,
        ``arrived_at``)."""
        import pandas as pd

        frames = [pd.read_parquet(self.state / d["rows_file"]) for d in self.index()]
        if not frames:
            cols = [ID, VALUE if self.kind == "labels" else "reason", "delivery", "arrived_at"]
            return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        return pd.concat(frames, ignore_index=True)

    def step_path(self, claim_sha: str) -> Path:
        return self.steps / f"{claim_sha}.parquet"

    def used_ids(self, exclude: str | None = None) -> set[str]:
        """Ids some monitor step already used (other than the step ``exclude``)."""
        import pandas as pd

        if not self.steps.exists():
            return set()
        out: set[str] = set()
        for p in self.steps.glob("*.parquet"):
            if p.stem != exclude:
                out.update(pd.read_parquet(p, columns=[ID])[ID].astype(str))
        return out

    # -- ingest
    def pending(self) -> list[Path]:
        """Files the delivery contract says are delivered, oldest name first: not temporary (``.*``,
        ``*.tmp``, ``*.part``), not a folder, and unchanged for ``RETRAINER_SETTLE_SECONDS``."""
        if not self.landing.exists():
            return []
        now, settle = time.time(), settle_seconds()
        out = []
        for p in sorted(self.landing.iterdir()):
            if is_temporary(p.name) or (p.is_dir() and not p.is_symlink()):
                continue
            with contextlib.suppress(FileNotFoundError):  # taken by a concurrent ingest meanwhile
                if p.is_symlink() or now - p.stat().st_mtime >= settle:  # still growing otherwise
                    out.append(p)
        return out

    def _quarantine(self, path: Path, message: str, **extra: Any) -> Path:
        self.quarantine.mkdir(parents=True, exist_ok=True)
        dest = _free(self.quarantine / path.name)
        os.replace(path, dest)
        write_json(
            dest.with_name(dest.name + ".reason.json"),
            {
                "file": path.name,
                "feed": self.kind,
                "message": message,
                "reason": message,
                "quarantined_at": _now(),
                **extra,
            },
        )
        log.error("%s quarantined at %s: %s", path.name, dest, message)
        return dest

    def _check_file(self, path: Path) -> None:
        """What can be judged without reading a byte (``lstat`` only, links never followed): a symbolic
        link, a folder or other non-regular file, an unsafe name, another format, or a file above
        ``RETRAINER_MAX_BATCH_BYTES`` (the batches' limit) raises :class:`BatchError` saying which."""
        name, st = path.name, path.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise BatchError(f"{name} is a symbolic link; drop the file itself into {self.kind}/")
        if not stat.S_ISREG(st.st_mode):
            raise BatchError(f"{name} is not a regular file (a folder, pipe or device); drop a file")
        if not SAFE_NAME.match(name):
            raise BatchError(f"unsafe file name {name!r}")
        if not name.endswith(BATCH_SUFFIXES):
            raise BatchError(f"unsupported format {name!r}: use .csv or .parquet")
        if st.st_size > max_batch_bytes():
            raise BatchError(
                f"{name} is {st.st_size:,} bytes, above RETRAINER_MAX_BATCH_BYTES={max_batch_bytes():,}: "
                "split it into smaller files"
            )

    def _read(self, path: Path) -> pd.DataFrame:
        """The file's rows as ``id`` + ``value`` (labels) or ``reason`` (flags); BatchError names the
        file and column for anything unusable."""
        import pandas as pd

        cfg, name = self.cfg, path.name
        self._check_file(path)
        df = read_batch(path)
        id_col = require_id_column(cfg)
        need = [id_col] + ([cfg.data.target] if self.kind == "labels" else [])
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise BatchError(f"{name}: missing column(s) {missing} (has {list(df.columns)[:20]})")
        if df.empty:
            raise BatchError(f"{name}: no rows")
        bad = df.index[df[id_col].isna()].tolist()
        if bad:
            raise BatchError(f"{name}: column {id_col!r} is empty in {len(bad)} row(s), e.g. rows {bad[:5]}")
        out = pd.DataFrame({ID: normalise_ids(df[id_col])})
        if self.kind == "labels":
            target = df[cfg.data.target]
            bad = df.index[target.isna()].tolist()
            if bad:
                raise BatchError(
                    f"{name}: column {cfg.data.target!r} (the label) is empty in {len(bad)} row(s), "
                    f"e.g. rows {bad[:5]}"
                )
            if cfg.task == "regression":
                numeric = pd.to_numeric(target, errors="coerce")
                bad = df.index[numeric.isna()].tolist()
                if bad:
                    raise BatchError(
                        f"{name}: column {cfg.data.target!r} must be numeric for a regression model; "
                        f"rows {bad[:5]} are not (e.g. {target[bad[0]]!r})"
                    )
                target = numeric.astype(float)
            out[VALUE] = target.to_numpy()
            clash = out.groupby(ID)[VALUE].nunique()
            clash = clash[clash > 1]
            if len(clash):
                raise BatchError(
                    f"{name}: column {id_col!r}: id(s) {clash.index[:5].tolist()} appear with different "
                    f"labels in one file"
                )
            out = out.drop_duplicates(ID, keep="last")
        else:
            reasons = df["reason"] if "reason" in df else pd.Series([None] * len(df))
            out["reason"] = reasons.astype(object).where(reasons.notna(), None).to_numpy()
            out = out.drop_duplicates(ID, keep="first")
        return out.reset_index(drop=True)

    def ingest(self, by: str) -> dict[str, Any]:
        """Take in every readable landed file (idempotent: identical content is ingested once)."""
        files = self.pending()
        out: dict[str, Any] = {"feed": self.kind, "ingested": [], "duplicates": [], "quarantined": []}
        if not files:
            return out
        require_id_column(self.cfg)  # files are waiting but cannot be joined: say what to set
        with self.lock():
            deliveries = self.index()
            known = {d["sha256"]: d for d in deliveries}
            for path in self.pending():  # re-listed under the lock: a concurrent ingest may have taken some
                try:
                    self._check_file(path)  # before any read: the link or special file itself is judged
                except FileNotFoundError:  # moved away since it was listed
                    continue
                except BatchError as exc:
                    message = f"{self.kind} file {path.name} of model {self.cfg.name} rejected: {exc}"
                    self._quarantine(path, message)
                    out["quarantined"].append({"file": path.name, "message": message})
                    continue
                sha = sha256_file(path)
                if sha in known:
                    message = (
                        f"duplicate delivery: identical content was already ingested as "
                        f"{known[sha]['file']} on {known[sha]['ingested_at']}; not counted again"
                    )
                    self._quarantine(path, message, duplicate_of=known[sha]["file"])
                    out["duplicates"].append(path.name)
                    continue
                try:
                    rows = self._read(path)
                except BatchError as exc:
                    message = f"{self.kind} file {path.name} of model {self.cfg.name} rejected: {exc}"
                    self._quarantine(path, message)
                    out["quarantined"].append({"file": path.name, "message": message})
                    continue
                arrived = datetime.fromtimestamp(min(path.stat().st_mtime, _ts()), UTC).isoformat()
                seq = len(deliveries) + 1
                rows_file = f"{seq:06d}-{sha[:12]}.parquet"
                rows["delivery"] = sha[:12]
                rows["arrived_at"] = arrived
                _atomic_parquet(rows, self.state / rows_file)
                self.archive.mkdir(parents=True, exist_ok=True)
                dest = _free(self.archive / path.name)
                entry = {
                    "seq": seq,
                    "file": path.name,
                    "archived_as": dest.name,
                    "sha256": sha,
                    "rows": len(rows),
                    "rows_file": rows_file,
                    "arrived_at": arrived,
                    "ingested_at": _now(),
                    "ingested_by": by,
                }
                deliveries.append(entry)
                known[sha] = entry
                self._save_index(
                    deliveries
                )  # recorded before the move: a crash leaves a duplicate, not a loss
                os.replace(path, dest)
                out["ingested"].append({"file": path.name, "rows": len(rows), "arrived_at": arrived})
                log.info("%s: ingested %s (%d rows)", self.kind, path.name, len(rows))
        return out


def ingest(cfg: ModelConfig, by: str, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """Ingest the pending files of each feed; a feed that cannot be read (no ``data.id_column``) is
    reported under ``errors`` and its files wait in landing until the config is fixed."""
    out: dict[str, Any] = {"errors": []}
    for kind in kinds:
        try:
            out[kind] = FeedStore(cfg, kind).ingest(by)
        except ConfigError as exc:
            log.error("%s feed of %s not ingested: %s", kind, cfg.name, exc)
            out["errors"].append(f"{kind}: {exc}")
            out[kind] = {"feed": kind, "ingested": [], "duplicates": [], "quarantined": []}
    return out


# -- ids and the archive -----------------------------------------------------------------------------------
def normalise_ids(ids: pd.Series) -> pd.Series:
    """Ids as strings, the same whether they were read from CSV, Parquet, as ints or as floats."""
    import pandas as pd

    if pd.api.types.is_float_dtype(ids) and (ids.dropna() % 1 == 0).all():
        ids = ids.astype("Int64")
    return ids.astype(str).reset_index(drop=True)


def id_index(cfg: ModelConfig, dr: DataRoot) -> pd.DataFrame:
    """``id``, ``batch``, ``pos`` (row in the file) of every archived batch row."""
    import pandas as pd

    id_col = require_id_column(cfg)
    frames = []
    for path in dr.archived():
        st = path.stat()
        ids = _batch_ids(str(path), st.st_mtime_ns, st.st_size, id_col)
        if ids is None:  # an archived batch without ids cannot take late labels
            continue
        frames.append(pd.DataFrame({ID: list(ids), "batch": path.name, "pos": range(len(ids))}))
    if not frames:
        return pd.DataFrame({ID: pd.Series(dtype=str), "batch": pd.Series(dtype=str), "pos": []})
    return pd.concat(frames, ignore_index=True)


@functools.lru_cache(maxsize=4096)
def _batch_ids(path: str, mtime_ns: int, size: int, id_col: str) -> tuple[str, ...] | None:
    """The normalised ids of one archived batch, read from its id column only (cached per file version:
    archived files do not change), so the cost does not grow with the batch's width."""
    from pathlib import Path

    try:
        return tuple(normalise_ids(read_batch(Path(path), [id_col])[id_col]))
    except (BatchError, KeyError):  # no such column (an older batch) or unreadable: no ids
        return None


def latest_labels(cfg: ModelConfig) -> pd.Series:
    """The arrived label of each id (a later delivery corrects an earlier one), indexed by id."""
    rows = FeedStore(cfg, "labels").rows()
    return rows.drop_duplicates(ID, keep="last").set_index(ID)[VALUE]


def label_filler(cfg: ModelConfig) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """A function filling in the labels the feed has delivered so far (for training windows), or None
    when the model takes no late labels or none has arrived."""
    if not cfg.data.id_column:
        return None
    late = latest_labels(cfg)
    if late.empty:
        return None
    return lambda df: apply_labels(cfg, df, late)


def apply_labels(cfg: ModelConfig, df: pd.DataFrame, labels: pd.Series | None = None) -> pd.DataFrame:
    """``df`` with the target filled in from the labels feed for every row whose label has arrived.

    A no-op without ``data.id_column`` or without labels. The batch's own label is kept unless a
    delivered label for the same id corrects it."""
    import pandas as pd

    id_col = cfg.data.id_column
    if not id_col or id_col not in df:
        return df
    labels = latest_labels(cfg) if labels is None else labels
    if labels.empty:
        return df
    target = cfg.data.target
    arrived = normalise_ids(df[id_col]).map(labels)
    arrived.index = df.index
    if not arrived.notna().any():  # no label for this batch: the frame (and its dtypes) as it was
        return df
    df = df.copy()
    merged = arrived.where(arrived.notna(), df[target]) if target in df else arrived
    if cfg.task == "regression":
        df[target] = pd.to_numeric(merged, errors="coerce").astype(float)
    else:
        df[target] = merged.infer_objects()
    return df


# -- one monitor step ------------------------------------------------------------------------------------
def _predictions(dr: DataRoot, batch: str, version: Any) -> tuple[pd.DataFrame | None, str | None, float]:
    """The stored predictions of ``batch`` by champion ``version`` (or, if none, the model that made the
    newest stored ones), as (frame, model id, mtime)."""
    import pandas as pd

    mine = dr.batch_predictions(batch, version)
    if mine.exists():
        return pd.read_parquet(mine), f"v{version}", mine.stat().st_mtime
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
    import pandas as pd

    store = FeedStore(cfg, "labels")
    path = store.step_path(claim["sha256"])
    id_col = require_id_column(cfg)
    with store.lock():
        if not path.exists():
            rows = _build_label_step(cfg, store, claim, current, version)
            _atomic_parquet(rows, path)
        rows = pd.read_parquet(path)
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
    import numpy as np
    import pandas as pd

    target, id_col = cfg.data.target, require_id_column(cfg)
    used = store.used_ids(exclude=claim["sha256"])
    delivered = store.rows()
    first = delivered.drop_duplicates(ID, keep="first").set_index(ID)  # each id is scored once
    fresh = first[~first.index.isin(used)]
    parts = []
    # 1. the batch in hand: its own labels, else delivered labels that were waiting for it
    cur_ids = normalise_ids(current[id_col])
    own = current[target].reset_index(drop=True) if target in current else pd.Series([None] * len(current))
    from_feed = cur_ids.map(fresh[VALUE]) if len(fresh) else pd.Series([None] * len(current))
    y = own.where(own.notna(), from_feed)
    mask = y.notna() & ~cur_ids.isin(used)
    if mask.any():
        parts.append(
            pd.DataFrame(
                {
                    ID: cur_ids[mask],
                    "batch": claim["batch"],
                    "y": y[mask].to_numpy(),
                    "prediction": current["prediction"].reset_index(drop=True)[mask].to_numpy(),
                    **{c: current[c].reset_index(drop=True)[mask].to_numpy() for c in proba_columns(current)},
                    "predicted_by": f"v{version}",
                    "delivery": cur_ids[mask].map(fresh["delivery"]).where(own[mask].isna(), None),
                    "arrived_at": None,
                    "batches_late": 0,
                    "hours_late": 0.0,
                }
            )
        )
    # 2. late labels for earlier, archived batches
    late = fresh[~fresh.index.isin(set(cur_ids))]
    if len(late):
        index = id_index(cfg, store.dr)
        index = index[index[ID].isin(late.index)]
        order = [p.name for p in store.dr.archived()]
        here = len(order) if claim["batch"] not in order else order.index(claim["batch"])
        for batch, hits in index.groupby("batch", sort=False):
            preds, model_id, made = _predictions(store.dr, str(batch), version)
            lab = late.loc[hits[ID]]
            arrived = pd.to_datetime(lab["arrived_at"], utc=True)
            hours = ((arrived - pd.Timestamp(made, unit="s", tz="UTC")).dt.total_seconds() / 3600).to_numpy()
            pred = (
                preds["prediction"].to_numpy()[hits["pos"].to_numpy()]
                if preds is not None and len(preds) > hits["pos"].max()
                else np.full(len(hits), np.nan)
            )
            parts.append(
                pd.DataFrame(
                    {
                        ID: hits[ID].to_numpy(),
                        "batch": str(batch),
                        "y": lab[VALUE].to_numpy(),
                        "prediction": pred,
                        **(
                            {c: preds[c].to_numpy()[hits["pos"].to_numpy()] for c in proba_columns(preds)}
                            if preds is not None and len(preds) > hits["pos"].max()
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
            _atomic_parquet(rows[[ID, "batch", "delivery", "arrived_at", "reason"]], path)
        step = pd.read_parquet(path)
        every = pd.concat(
            [pd.read_parquet(p, columns=[ID, "batch"]) for p in store.steps.glob("*.parquet")],
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


# -- helpers ---------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat()


def _ts() -> float:
    return datetime.now(UTC).timestamp()


def _free(dest: Path) -> Path:
    """``dest``, or a free name beside it (never overwrite): ``x.csv``, ``x.dup-1.csv``, ..."""
    stem, dot, suffix = dest.name.partition(".")
    candidate, n = dest, 1
    while candidate.exists() or candidate.is_symlink():  # a quarantined dangling link is taken too
        candidate = dest.with_name(f"{stem}.dup-{n}{dot}{suffix}")
        n += 1
    return candidate


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
