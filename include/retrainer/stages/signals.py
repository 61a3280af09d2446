"""The performance and flag signals of a batch, as the monitor tasks and ``retrainer check`` compute them:
the champion's metric on the labels that matured, the per-row errors the change detector reads, and the
rows a ``<batch>.flags.csv`` sidecar names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrainer import policy
from retrainer.exceptions import BatchError
from retrainer.stages import feeds
from retrainer.stages.batches import labelled_batch

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig


# -- performance ----------------------------------------------------------------------------------------
def own_labels(cfg: ModelConfig, batch: str, version: Any, lab: pd.DataFrame) -> list[feeds.Matured]:
    """The labels that came with the batch itself (``lab``: its labelled rows with the champion's
    ``prediction`` and any stored class probabilities), as the one step of matured labels they are."""
    proba, classes = feeds.stored_proba(lab)
    return [
        feeds.Matured(
            batch,
            f"v{version}",
            lab[cfg.data.target].to_numpy(),
            lab["prediction"].to_numpy(),
            proba=proba,
            classes=classes,
        )
    ]


def performance_of(
    cfg: ModelConfig, matured: list[feeds.Matured], version: Any, reference: float | None
) -> tuple[dict[str, Any], Any]:
    """The performance signal of champion v``version`` on the labels that ``matured`` at this step, against
    its holdout metric ``reference``; and the per-row errors for the change detector (None without rows)."""
    signal = feeds.performance_signal(cfg, matured, f"v{version}")
    perf = {
        "metric": cfg.metric,
        "value": signal["value"],
        "all": signal["all"],
        "reference": reference,
        "labelled_rows": signal["labelled_rows"],
        "scored_batches": signal["batches"],
    }
    return perf, signal["errors"]


def step_errors(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> Any:
    """Per-row errors of the champion on the labels the performance task scored for this batch (feeds
    included), for the change detector; None without a detector or predictions."""
    import pandas as pd

    if cfg.triggers.error_detector is None or scored.get("predictions") is None:
        return None
    version = scored.get("champion_version")
    step = feeds.FeedStore(cfg, "labels").step_path(claim["sha256"])
    if cfg.data.id_column and step.exists():  # the labels the performance task scored (feeds included)
        rows = pd.read_parquet(step)
        matured = [
            feeds.Matured(str(b), g["predicted_by"].iloc[0], g["y"].to_numpy(), g["prediction"].to_numpy())
            for b, g in rows.groupby("batch", sort=False)
        ]
        return feeds.performance_signal(cfg, matured, f"v{version}")["errors"]
    lab = labelled_batch(cfg, claim, scored, [cfg.data.time_column, cfg.data.target])
    if cfg.data.target not in lab:
        return None
    return policy.error_stream(cfg.task, lab[cfg.data.target].to_numpy(), lab["prediction"].to_numpy())


# -- flags ----------------------------------------------------------------------------------------------
def read_flags(cfg: ModelConfig, flags_file: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The batch's sidecar flags file (None if there is none) and the column naming the flagged rows:
    ``row`` (0-based position in the batch) or the id column. :class:`BatchError` says why a sidecar
    cannot be used: empty, unreadable, neither column, or a ``row`` that is not a whole number."""
    import pandas as pd

    if not flags_file.exists() and not flags_file.is_symlink():
        return None, None
    if flags_file.is_symlink() or not flags_file.is_file():
        raise BatchError("not a regular file (a symbolic link or a folder): drop the file itself")
    try:
        flags = pd.read_csv(flags_file)
    except Exception as exc:  # pandas raises many types for an empty or corrupt file
        raise BatchError(f"cannot read it: {type(exc).__name__}: {exc}") from exc
    id_col = cfg.data.id_column
    key = "row" if "row" in flags else (id_col if id_col and id_col in flags else None)
    if key is None:
        raise BatchError(
            "needs a 'row' column (0-based row in the batch)"
            + (f" or '{id_col}'" if id_col else "")
            + f"; it has {list(flags.columns)[:20]}"
        )
    if key == "row":
        rows = pd.to_numeric(flags["row"], errors="coerce")
        bad = flags.index[flags["row"].notna() & ((rows % 1 != 0) | rows.isna())].tolist()
        if bad:
            raise BatchError(
                f"column 'row' must hold whole numbers; lines {[b + 2 for b in bad[:5]]} do not "
                f"(e.g. {flags['row'][bad[0]]!r})"
            )
    return flags, key


def sidecar_rows(
    flags: pd.DataFrame | None, key: str | None, ids: pd.Series | None, n_rows: int = 0
) -> tuple[set[int], int]:
    """Positions of the batch rows the sidecar flags, and how many distinct sidecar entries name no row
    of the batch (not counted). ``ids``: the batch's normalised ids (their count sets the rows)."""

    if flags is None or key is None:
        return set(), 0
    n = len(ids) if ids is not None else n_rows
    if key == "row":
        wanted = {int(r) for r in flags["row"].dropna()}
        rows = {r for r in wanted if 0 <= r < n}
        return rows, len(wanted - rows)
    named = set(feeds.normalise_ids(flags[key].dropna()))
    known = list(ids) if ids is not None else []  # a batch without its id column: no id names a row
    rows = {i for i, v in enumerate(known) if v in named}
    return rows, len(named - set(known))
