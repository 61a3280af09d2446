"""The labels and flags feeds' store: deliveries taken in from ``landing/<model>/<kind>/``, their rows, and
the join of delivered labels to archived batches by row id.

:meth:`FeedStore.ingest` turns each landed file into a *delivery*: its rows are kept under
``state/<model>/feeds/<kind>/`` and the file moves to ``archive/<model>/<kind>/``. A file with identical
content to one already ingested, or one that cannot be used, goes to ``quarantine/<model>/<kind>/`` with a
``.reason.json``; nothing is deleted. See :mod:`retrainer.stages.feeds` for how the monitor uses them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import BatchError, ConfigError
from retrainer.storage import (
    BATCH_SUFFIXES,
    SAFE_NAME,
    DataRoot,
    free_name,
    is_link,
    is_temporary,
    max_batch_bytes,
    move_to_free_name,
    now_iso,
    read_batch,
    read_parquet,
    settle_seconds,
    sha256_file,
    write_json,
    write_parquet,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)
KINDS = ("labels", "flags")
ID, VALUE = "id", "value"


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
        self.dr = DataRoot.for_model(cfg)
        self.landing = self.dr.landing / kind
        self.archive = self.dr.archive / kind
        self.quarantine = self.dr.quarantine / kind
        self.state = self.dr.feed_state(kind)
        self.steps = self.state / "steps"

    # -- bookkeeping
    def lock(self) -> AbstractContextManager[None]:
        """One writer at a time (monitor and retrain runs may ingest concurrently)."""
        return self.dr.lock(self.state / ".lock")

    def index(self) -> list[dict[str, Any]]:
        p = self.state / "index.json"
        return json.loads(p.read_text())["deliveries"] if p.exists() else []

    def _save_index(self, deliveries: list[dict[str, Any]]) -> None:
        write_json(self.state / "index.json", {"deliveries": deliveries})

    def rows(self) -> pd.DataFrame:
        """Every delivered row, oldest delivery first (columns ``id``, ``value``/``reason``, ``delivery``,
        ``arrived_at``)."""
        import pandas as pd

        frames = [read_parquet(self.state / d["rows_file"]) for d in self.index()]
        if not frames:
            cols = [ID, VALUE if self.kind == "labels" else "reason", "delivery", "arrived_at"]
            return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        return pd.concat(frames, ignore_index=True)

    def step_path(self, claim_sha: str) -> Path:
        return self.steps / f"{claim_sha}.parquet"

    def used_ids(self, exclude: str | None = None) -> set[str]:
        """Ids some monitor step already used (other than the step ``exclude``)."""

        if not self.steps.exists():
            return set()
        out: set[str] = set()
        for p in self.steps.glob("*.parquet"):
            if p.stem != exclude:
                out.update(read_parquet(p, columns=[ID])[ID].astype(str))
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
            if is_temporary(p.name) or (p.is_dir() and not is_link(p)):
                continue
            with contextlib.suppress(FileNotFoundError):  # taken by a concurrent ingest meanwhile
                if is_link(p) or now - p.stat().st_mtime >= settle:  # still growing otherwise
                    out.append(p)
        return out

    def _quarantine(self, path: Path, message: str, **extra: Any) -> Path:
        self.quarantine.mkdir(parents=True, exist_ok=True)
        dest = move_to_free_name(path, self.quarantine / path.name)  # never over an earlier rejected file
        write_json(
            dest.with_name(dest.name + ".reason.json"),
            {
                "file": path.name,
                "feed": self.kind,
                "message": message,
                "reason": message,
                "quarantined_at": now_iso(),
                **extra,
            },
        )
        log.error("%s quarantined at %s: %s", path.name, dest, message)
        return dest

    def _check_file(self, path: Path) -> None:
        """What can be judged without reading a byte (``lstat`` only, links never followed): a symbolic
        link, a folder or other non-regular file, an unsafe name, another format, or a file above
        ``RETRAINER_MAX_BATCH_BYTES`` (the batches' limit) raises :class:`BatchError` saying which."""
        name = path.name
        st = path.lstat() if isinstance(path, Path) else path.stat()  # object stores have no links
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
            for path in self.pending():  # re-listed under the lock: a concurrent ingest may have taken some
                self._take_in(path, deliveries, by, out)
        return out

    def _take_in(self, path: Path, deliveries: list[dict[str, Any]], by: str, out: dict[str, Any]) -> None:
        """Ingest one landed file (under the lock): a delivery, a duplicate or a quarantined file."""
        try:
            self._check_file(path)  # before any read: the link or special file itself is judged
        except FileNotFoundError:  # moved away since it was listed
            return
        except BatchError as exc:
            self._reject(path, exc, out)
            return
        sha = sha256_file(path)
        known = next((d for d in deliveries if d["sha256"] == sha), None)
        if known is not None:
            message = (
                f"duplicate delivery: identical content was already ingested as "
                f"{known['file']} on {known['ingested_at']}; not counted again"
            )
            self._quarantine(path, message, duplicate_of=known["file"])
            out["duplicates"].append(path.name)
            return
        try:
            rows = self._read(path)
        except BatchError as exc:
            self._reject(path, exc, out)
            return
        arrived = datetime.fromtimestamp(min(path.stat().st_mtime, time.time()), UTC).isoformat()
        seq = len(deliveries) + 1
        rows_file = f"{seq:06d}-{sha[:12]}.parquet"
        rows["delivery"] = sha[:12]
        rows["arrived_at"] = arrived
        write_parquet(self.state / rows_file, rows)
        self.archive.mkdir(parents=True, exist_ok=True)
        dest = free_name(self.archive / path.name)
        entry = {
            "seq": seq,
            "file": path.name,
            "archived_as": dest.name,
            "sha256": sha,
            "rows": len(rows),
            "rows_file": rows_file,
            "arrived_at": arrived,
            "ingested_at": now_iso(),
            "ingested_by": by,
        }
        deliveries.append(entry)
        self._save_index(deliveries)  # recorded before the move: a crash leaves a duplicate, not a loss
        try:
            self.dr.fs.move_no_overwrite(path, dest)
        except FileExistsError:  # a file put into the archive by hand meanwhile: both kept
            entry["archived_as"] = move_to_free_name(path, dest).name
            self._save_index(deliveries)
        out["ingested"].append({"file": path.name, "rows": len(rows), "arrived_at": arrived})
        log.info("%s: ingested %s (%d rows)", self.kind, path.name, len(rows))

    def _reject(self, path: Path, exc: BatchError, out: dict[str, Any]) -> None:
        message = f"{self.kind} file {path.name} of model {self.cfg.name} rejected: {exc}"
        self._quarantine(path, message)
        out["quarantined"].append({"file": path.name, "message": message})


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
        ids = _batch_ids(path, st.st_mtime_ns, st.st_size, id_col)
        if ids is None:  # an archived batch without ids cannot take late labels
            continue
        frames.append(pd.DataFrame({ID: list(ids), "batch": path.name, "pos": range(len(ids))}))
    if not frames:
        return pd.DataFrame({ID: pd.Series(dtype=str), "batch": pd.Series(dtype=str), "pos": []})
    return pd.concat(frames, ignore_index=True)


@functools.lru_cache(maxsize=4096)
def _batch_ids(path: Path, mtime_ns: int, size: int, id_col: str) -> tuple[str, ...] | None:
    """The normalised ids of one archived batch, read from its id column only (cached per file version:
    archived files do not change), so the cost does not grow with the batch's width."""
    try:
        return tuple(normalise_ids(read_batch(path, [id_col])[id_col]))
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
