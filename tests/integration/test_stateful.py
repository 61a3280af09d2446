"""The randomized stateful test: Hypothesis drives the functions the DAG tasks call, in random orders, on
messy inputs, on a real data root and a real MLflow SQLite store, and checks after every step that nothing
is lost and no decision is wrong.

Rules: deliver a batch (random size; exact duplicates, re-exports of the same rows, redelivery under an
archived name, timestamps with a UTC offset or one row stamped now, ids reused from an earlier batch, a
feature missing, an extra column, nulls, labels in the batch or not, a flags sidecar for the batch's ids,
for unknown ids, or empty), deliver a labels file (late, early, partial, unknown ids, a dangling symlink,
a symlink to a folder), run a monitor step (every task in the DAG's order, optionally one task run twice as
an Airflow retry does, or the decision's head write failing once), retrain (optionally stopped after a
stage, optionally with gc between evaluate and register), gc (at a random later time), roll back.

Invariants after every step: every delivered file is in exactly one of landing, processing, archive or
quarantine (a quarantined one with its reason), or was removed by gc outside every window; the
predictions stored for an archived batch are the ones its own rows got; requests to retrain are at least
``cooldown_batches`` decisions apart; gc removes no batch inside the training window measured from the
newest labelled row and no snapshot of a registered version, and ``reproduce`` of every registered version
succeeds; no step raises anything but Retrainer's own errors, each with a message.

Bounded in ``make test`` (``RETRAINER_STATEFUL_EXAMPLES``, default 3 examples of up to
``RETRAINER_STATEFUL_STEPS``, default 10, steps); ``make test-deep`` runs 20x the examples. A first
champion is trained once per session into a template state folder, copied for every example (same path,
so MLflow's absolute artifact locations stay valid).

The minimal failing sequences it found for the defects known when it was written are the explicit
regression tests at the end of this file (each a sequence it found or a defect it covers).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from retrainer.tracking import policy_state

pytestmark = pytest.mark.integration

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402

SECONDS: dict[str, float] = {}  # time spent in each package function
STATS: dict[str, int] = {}  # what ran: examples, steps, and each rule's outcomes (printed at the end)


def _count(key: str) -> None:
    STATS[key] = STATS.get(key, 0) + 1


REPO = Path(__file__).resolve().parents[2]
MODEL = "stateful"
ID = "ride_id"
EXAMPLES = int(os.environ.get("RETRAINER_STATEFUL_EXAMPLES", "3"))
STEPS = int(os.environ.get("RETRAINER_STATEFUL_STEPS", "10"))
HISTORY_WEEKS = 5
# input kinds or faults to leave out (comma-separated), to look past a known failure while it is being fixed
SKIP = set(filter(None, os.environ.get("RETRAINER_STATEFUL_SKIP", "").split(",")))
MONITOR_TASKS = ("validate", "score", "drift", "ingest", "performance", "flags", "decide", "archive")
RULES = ("deliver_batch", "deliver_labels", "monitor_step", "retrain", "gc", "rollback")
STAGES = ("snapshot", "gate", "train", "evaluate", "register", "promote")
BATCH_KINDS = (
    "normal",
    "normal",
    "normal",
    "unlabelled",
    "unlabelled",
    "duplicate",  # the exact bytes of an earlier delivery, under a new name
    "reexport",  # the rows of an earlier delivery, written again (different bytes)
    "same_name",  # new rows under the name of an archived batch
    "utc_z",  # time column as text with a 'Z'
    "dst_offsets",  # time column as text with -05:00 / -04:00 (a week across a DST change)
    "one_row_now",  # one row stamped at today's date
    "reused_ids",  # new rows carrying the ids of an earlier batch
    "missing_feature",
    "extra_column",
    "null_features",
)


class Injected(Exception):
    """A fault the test injects (a lost task result, a failed write); never raised by Retrainer."""


def model_config() -> dict[str, Any]:
    """The Bikeshare config, small and fast: a ridge regression, an id column, a 4-week window."""
    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["name"] = MODEL
    raw["data"]["id_column"] = ID
    raw["model"] = {
        "estimator": "sklearn.linear_model.Ridge",
        "params": {"alpha": 1.0},
        "scale_numeric": True,
    }
    raw["training"] = {"window": "4W", "holdout": "1W", "min_rows": 150}
    raw["validation"] = {"metric": "rmse", "max_degradation": 0.5, "floors": {}}
    raw["retention"] = {"archive": "4W", "label_wait": "2W", "snapshots": "7D", "predictions": "30D"}
    raw.pop("backtest", None)
    raw["triggers"]["cooldown_batches"] = 2
    return raw


@dataclass
class Template:
    folder: Path  # the examples' folders are made under it (a copy of the template each)
    template: Path
    cfg: Any
    weeks: list[tuple[str, pd.DataFrame]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A state folder with 5 archived weeks and a first champion, trained once for the module."""
    from retrainer.config import ModelConfig
    from retrainer.ml.datasets import bikeshare, weekly_batches
    from retrainer.storage import DataRoot
    from tests.conftest import point_state_at
    from tests.support.champion import train_first_champion

    base = tmp_path_factory.mktemp("stateful")
    folder, tmpl = base / "examples", base / "template"
    df = bikeshare()
    df[ID] = [f"r{i:06d}" for i in range(len(df))]  # ids unique across the stream
    weeks = weekly_batches(df, "timestamp")
    with pytest.MonkeyPatch.context() as mp:
        point_state_at(mp, tmpl)
        cfg = ModelConfig.model_validate(model_config())
        dr = DataRoot(tmpl / "data", MODEL).ensure()
        for name, week in weeks[:HISTORY_WEEKS]:
            dr.import_batch(week, f"{name}.parquet", stage="archive")
        train_first_champion(cfg)
        folder.mkdir()
        yield Template(folder, tmpl, cfg, weeks)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Delivery:
    name: str
    kind: str
    sha: str
    frame: pd.DataFrame  # the rows as meant (typed time column, true targets)
    labelled: bool
    expect_quarantine: str | None = None  # why the issue says this file must not be archived
    flagged: int | None = None  # distinct ids of the batch its flags sidecar names (None: no sidecar)


@dataclass
class World:
    deliveries: list[Delivery] = field(default_factory=list)
    label_files: list[tuple[str, str]] = field(default_factory=list)  # (name, sha or "link:<target>")
    collected: dict[str, int] = field(default_factory=dict)  # sha -> files gc removed from the archive
    decisions: dict[str, bool] = field(default_factory=dict)  # batch sha -> retrain requested (decided order)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # batch sha -> what scoring returned
    gc_predictions: set[str] = field(default_factory=set)  # prediction files gc removed (past retention)
    next_week: int = HISTORY_WEEKS
    promoted: int = 1  # champions so far (the template's first one)
    since_retrain: int = 0  # monitor steps since the last retrain
    runs: int = 0


def _deliver(dr: Any, name: str, df: pd.DataFrame, csv: bool) -> Path:
    """Write under a temporary name, then rename (the delivery contract)."""
    dr.landing.mkdir(parents=True, exist_ok=True)
    dest = dr.landing / name
    tmp = dr.landing / f".{name}.tmp"
    if csv:
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
    os.replace(tmp, dest)
    return dest


def _is_batch(p: Path) -> bool:
    n = p.name
    return (
        (p.is_file() or p.is_symlink())
        and not n.startswith(".")
        and not n.endswith((".reason.json", ".flags.csv", ".recorded"))
        and n.endswith((".parquet", ".csv"))
    )


class RetrainerMachine(RuleBasedStateMachine):
    """One model's stream, driven through the monitor, retrain, gc and rollback functions."""

    tmpl: Template  # set by the test

    def __init__(self) -> None:
        super().__init__()
        from retrainer.storage import DataRoot

        t = self.tmpl
        _count("examples")
        # a fresh folder (a fresh SQLite URI: MLflow keeps one engine per URI) with the template's data
        # root and tracking store; runs keep the template's absolute artifact locations, each its own
        folder = t.folder / f"example-{STATS['examples']:04d}"
        shutil.copytree(t.template / "data", folder / "data", symlinks=True)
        shutil.copyfile(t.template / "mlflow.db", folder / "mlflow.db")
        os.environ["RETRAINER_DATA_ROOT"] = str(folder / "data")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        self.cfg = t.cfg
        self.dr = DataRoot(folder / "data", MODEL)
        self.w = World()

    def teardown(self) -> None:
        shutil.rmtree(self.dr.root.parent, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------------------
    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one package function: only Retrainer's own errors (with a message) may come out."""
        from retrainer.exceptions import RetrainerError

        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        except RetrainerError as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            _count(f"error {fn.__name__}: {type(exc).__name__}")
            raise
        finally:
            SECONDS[fn.__name__] = SECONDS.get(fn.__name__, 0.0) + time.monotonic() - started

    def _week(self) -> pd.DataFrame:
        weeks = self.tmpl.weeks
        if self.w.next_week >= len(weeks):
            self.w.next_week = HISTORY_WEEKS
        df = weeks[self.w.next_week][1]
        self.w.next_week += 1
        return df.copy()

    def _archived_frames(self) -> dict[Path, pd.DataFrame]:
        from retrainer.storage import read_batch

        return {p: read_batch(p) for p in self.dr.archived()}

    # -- rules: deliveries --------------------------------------------------------------------------------
    @rule(
        kind=st.sampled_from(BATCH_KINDS),
        rows=st.integers(min_value=30, max_value=170),
        flags=st.sampled_from(["none", "none", "ids", "unknown_ids", "empty"]),
        csv=st.booleans(),
    )
    def deliver_batch(self, kind: str, rows: int, flags: str, csv: bool) -> None:
        if kind in SKIP:
            kind = "normal"
        _count(f"deliver_batch {kind}")
        earlier = [d for d in self.w.deliveries if d.kind not in ("duplicate",)]
        if kind in ("duplicate", "reexport", "same_name", "reused_ids") and not earlier:
            kind = "normal"
        self.w.runs += 1
        n = self.w.runs
        expect: str | None = None
        if kind == "duplicate":
            src = earlier[-1]
            located = self._locate(src.sha)
            if located is None:
                return  # collected by gc: nothing to copy
            path = self.dr.landing / f"dup-{n:03d}{located.suffix}"
            self.dr.landing.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(located, self.dr.landing / f".{path.name}.tmp")
            os.replace(self.dr.landing / f".{path.name}.tmp", path)
            self.w.deliveries.append(
                Delivery(path.name, kind, _sha(path), src.frame, src.labelled, "identical content")
            )
            return
        if kind == "reexport":  # the same rows in the other format: other bytes
            src = earlier[-1]
            df = src.frame.copy()
            name = f"reexport-{n:03d}.{'parquet' if src.name.endswith('.csv') else 'csv'}"
            path = _deliver(self.dr, name, df, csv=name.endswith(".csv"))
            self.w.deliveries.append(Delivery(name, kind, _sha(path), df, src.labelled, "same rows"))
            return
        df = self._week().iloc[:rows].reset_index(drop=True)
        meant = df.copy()
        out = df.copy()
        labelled = kind != "unlabelled" and kind != "null_features"
        if not labelled:
            out["bikers"] = np.nan
        if kind == "reused_ids":
            src_ids = earlier[-1].frame[ID].tolist()
            k = min(len(src_ids), len(out))
            out = out.iloc[:k].copy()
            out[ID] = src_ids[:k]
            meant = out.copy()
            labelled = True
        elif kind == "utc_z":
            out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            csv = True
        elif kind == "dst_offsets":
            local = out["timestamp"].dt.tz_localize(
                "America/New_York", nonexistent="shift_forward", ambiguous=False
            )
            out["timestamp"] = [t.isoformat() for t in local]
            csv = True
        elif kind == "one_row_now":
            out.loc[len(out) - 1, "timestamp"] = pd.Timestamp.now().floor("h")
            meant = out.copy()
            expect = "a row far outside the batch's time span"
        elif kind == "missing_feature":
            out = out.drop(columns=["temp"])
            expect = "feature missing"
        elif kind == "extra_column":
            out["note"] = "x"
        elif kind == "null_features":
            out.loc[out.index[:3], "hum"] = np.nan
        name = f"b{n:03d}-{self.tmpl.weeks[self.w.next_week - 1][0]}"
        if kind == "same_name":
            archived = [p.stem for p in self.dr.archived()] if self.dr.archive.exists() else []
            if archived:
                name = sorted(archived)[-1]
        name += ".csv" if csv else ".parquet"
        if (self.dr.landing / name).exists():
            name = f"b{n:03d}-again.{'csv' if csv else 'parquet'}"
        if flags in SKIP:
            flags = "none"
        if flags != "none":
            ids = out[ID].tolist()
            fl = {
                "ids": pd.DataFrame({ID: ids[: max(1, len(ids) // 20)]}),
                "unknown_ids": pd.DataFrame({ID: [f"unknown-{i}" for i in range(40)]}),
                "empty": pd.DataFrame({ID: pd.Series(dtype=str)}),
            }[flags]
            self.dr.landing.mkdir(parents=True, exist_ok=True)
            sidecar = self.dr.landing / f"{Path(name).stem}.flags.csv"
            if flags == "empty":
                sidecar.write_bytes(b"")  # a 0-byte file
            else:
                fl.to_csv(sidecar, index=False)
        path = _deliver(self.dr, name, out, csv)
        flagged = None if flags == "none" else len(set(fl[ID]) & set(out[ID]))
        self.w.deliveries.append(Delivery(name, kind, _sha(path), meant, labelled, expect, flagged))

    @rule(
        which=st.sampled_from(
            ["late", "late", "partial", "unknown_labels", "early", "dangling_link", "dir_link"]
        ),
    )
    def deliver_labels(self, which: str) -> None:
        if which in SKIP:
            return
        _count(f"deliver_labels {which}")
        feed = self.dr.landing / "labels"
        feed.mkdir(parents=True, exist_ok=True)
        self.w.runs += 1
        name = f"labels-{self.w.runs:03d}.csv"
        if which in ("dangling_link", "dir_link"):
            target = feed.parent / "no-such-file.csv" if which == "dangling_link" else self.dr.archive
            (feed / name).symlink_to(target)
            self.w.label_files.append((name, f"link:{target}"))
            return
        if which == "early":
            weeks = self.tmpl.weeks
            df = weeks[min(self.w.next_week, len(weeks) - 1)][1][[ID, "bikers"]]
        elif which == "unknown_labels":
            df = pd.DataFrame({ID: [f"nobody-{i}" for i in range(20)], "bikers": 1.0})
        else:
            waiting = [d for d in self.w.deliveries if not d.labelled and d.expect_quarantine is None]
            if not waiting:
                return
            d = waiting[0 if which == "late" else -1]
            d.labelled = which == "late"
            df = d.frame[[ID, "bikers"]]
            if which == "partial":
                df = df.iloc[: len(df) // 2]
        df.to_csv(feed / f".{name}.tmp", index=False)
        os.replace(feed / f".{name}.tmp", feed / name)
        self.w.label_files.append((name, _sha(feed / name)))

    # -- rules: the monitor DAG's tasks -----------------------------------------------------------------------
    @precondition(
        lambda self: self.dr.landing.exists() and any(_is_batch(p) for p in self.dr.landing.iterdir())
    )
    @rule(fault=st.sampled_from([None, None, None, *MONITOR_TASKS, "decide_head_write"]))
    def monitor_step(self, fault: str | None) -> None:
        if fault in SKIP:
            fault = None
        _count(f"monitor_step fault={fault}")
        from retrainer.exceptions import RetrainerError
        from retrainer.stages import monitor

        cfg = self.cfg
        self.w.runs += 1
        run_id = f"scheduled__{self.w.runs:04d}"
        claim = self._call(monitor.claim_batch, cfg, run_id, lambda c: False)
        if claim is None:
            return
        self.w.since_retrain += 1

        def task(name: str, fn: Any, *args: Any) -> Any:
            out = self._call(fn, *args)
            if fault == name:  # the result was lost (worker killed after the work): Airflow retries
                out = self._call(fn, *args)
            return out

        try:
            validation = task("validate", monitor.validate_batch, cfg, claim, run_id)
            scored = task("score", monitor.score_batch, cfg, claim)
            if scored.get("predictions"):
                self.w.predictions[claim["sha256"]] = pd.read_parquet(scored["predictions"])[
                    "prediction"
                ].to_numpy()
            drift = task("drift", monitor.measure_drift, cfg, claim, scored)
            task("ingest", monitor.ingest_feeds, cfg, claim)
            perf = task("performance", monitor.performance, cfg, claim, scored)
            flags = task("flags", monitor.flagged_rate, cfg, claim, validation)
            mine = [d for d in self.w.deliveries if d.sha == claim["sha256"]]
            if mine and mine[-1].flagged is not None:  # only the batch's own ids count
                assert flags.get("flagged", 0) == mine[-1].flagged, (
                    f"{claim['batch']}: {flags.get('flagged')} flagged rows counted, "
                    f"its sidecar names {mine[-1].flagged} of its ids"
                )
            args = (cfg, claim, validation, scored, drift, perf, flags, run_id)
            if fault == "decide_head_write":
                real = policy_state.advance_head

                def failing(*a: Any, **k: Any) -> None:
                    raise Injected("the tracking store refused the head write")

                policy_state.advance_head = failing  # type: ignore[assignment]
                try:
                    with contextlib.suppress(Injected):
                        monitor.decide(*args)
                finally:
                    policy_state.advance_head = real  # type: ignore[assignment]
            decision = task("decide", monitor.decide, *args)
            if claim["sha256"] not in self.w.decisions:
                self.w.decisions[claim["sha256"]] = bool(decision["retrain"])
            task("archive", monitor.archive_batch, cfg, claim)
        except RetrainerError:
            return

    # -- rules: the retrain DAG's stages ----------------------------------------------------------------------
    @precondition(lambda self: self.w.since_retrain > 0)
    @rule(stop_after=st.sampled_from([None, None, *STAGES[:4]]), gc_days=st.sampled_from([None, None, 8]))
    def retrain(self, stop_after: str | None, gc_days: int | None) -> None:
        if "gc_between" in SKIP:
            gc_days = None
        _count(f"retrain stop_after={stop_after} gc_between={gc_days}")
        from retrainer.exceptions import RetrainerError
        from retrainer.stages import retention
        from retrainer.stages import retrain as rt

        cfg = self.cfg
        self.w.runs += 1
        self.w.since_retrain = 0
        run_id = f"manual__{self.w.runs:04d}"
        try:
            trig = rt.resolve_trigger("manual", [], {"reason": "stateful test"})
            snap = self._call(rt.snapshot, cfg, trig["window"], trig.get("batches"))
            if stop_after == "snapshot":
                return
            self._call(rt.gate, cfg, snap)
            if stop_after == "gate":
                return
            trained = self._call(rt.train, cfg, snap, trig, run_id)
            if stop_after == "train":
                return
            ev = self._call(rt.evaluate, cfg, snap, trained, trig["force"])
            if stop_after == "evaluate":
                return
            if gc_days is not None:  # the maintenance DAG runs while this retrain is between two tasks
                self._gc(self._call(retention.collect, cfg, now=time.time() + gc_days * 86400))
            reg = self._call(rt.register, cfg, snap, trained, ev, trig)
            if self._call(rt.promote, cfg, reg, ev, trig, run_id).get("promoted"):
                self.w.promoted += 1
        except RetrainerError:
            return

    # -- rules: maintenance, rollback ---------------------------------------------------------------------------
    @rule(days=st.sampled_from([0, 8, 40]))
    def gc(self, days: int) -> None:
        _count(f"gc +{days}d")
        from retrainer.stages import retention

        frames = self._archived_frames()
        shas = {p: _sha(p) for p in frames}
        newest_labelled = self._newest_labelled(frames)
        plan = self._call(retention.collect, self.cfg, now=time.time() + days * 86400)
        window = pd.Timedelta(self.cfg.training.window)
        for e in plan.remove.get("archive", []):
            p = Path(e["path"])
            if p not in frames:
                continue  # a flags sidecar
            self.w.collected[shas[p]] = self.w.collected.get(shas[p], 0) + 1
            t = pd.to_datetime(frames[p]["timestamp"], utc=True).dt.tz_localize(None).max()
            assert "gc_window" in SKIP or newest_labelled is None or t <= newest_labelled - window, (
                f"gc removed {p.name} (newest row {t}) inside the training window "
                f"({window} before the newest labelled row {newest_labelled})"
            )
        self._gc(plan)

    def _gc(self, plan: Any) -> None:
        """After any gc: every registered version still has its snapshot and reproduces."""
        from retrainer.stages import reproduce
        from retrainer.tracking import runs as tracking

        self.w.gc_predictions |= {Path(e["path"]).name for e in plan.remove.get("predictions", [])}

        versions = tracking.client().search_model_versions(f"name = '{MODEL}'")
        for mv in versions:
            sha = mv.tags.get("retrainer.snapshot_sha256")
            assert (self.dr.snapshots / sha).is_dir(), f"gc removed the snapshot of registered v{mv.version}"
        for mv in versions:
            out = self._call(reproduce.reproduce, MODEL, int(mv.version))
            assert out, f"reproduce v{mv.version} returned nothing"

    def _newest_labelled(self, frames: dict[Path, pd.DataFrame]) -> pd.Timestamp | None:
        from retrainer.stages import feeds

        labels = feeds.latest_labels(self.cfg)
        newest = None
        for df in frames.values():
            t = pd.to_datetime(df["timestamp"], utc=True).dt.tz_localize(None)
            known = df["bikers"].notna() if "bikers" in df else pd.Series(False, index=df.index)
            if ID in df:
                known |= feeds.normalise_ids(df[ID]).isin(labels.index).to_numpy()
            if known.any():
                m = t[known.to_numpy()].max()
                newest = m if newest is None else max(newest, m)
        return newest

    @precondition(lambda self: self.w.promoted >= 2)
    @rule()
    def rollback(self) -> None:
        _count("rollback")
        from retrainer.exceptions import RetrainerError
        from retrainer.stages import promotion

        with contextlib.suppress(RetrainerError):
            self._call(promotion.rollback, MODEL, None, "stateful test", "stateful")

    # -- invariants -------------------------------------------------------------------------------------------
    def _locate(self, sha: str) -> Path | None:
        for stage in ("landing", "processing", "archive", "quarantine"):
            folder = self.dr.dir(stage)
            if folder.exists():
                for p in folder.iterdir():
                    if _is_batch(p) and not p.is_symlink() and _sha(p) == sha:
                        return p
        return None

    @invariant()
    def nothing_is_lost(self) -> None:
        found: dict[str, list[Path]] = {}
        for stage in ("landing", "processing", "archive", "quarantine"):
            folder = self.dr.dir(stage)
            if not folder.exists():
                continue
            for p in folder.iterdir():
                if _is_batch(p) and not p.is_symlink():
                    found.setdefault(_sha(p), []).append(p)
        expected: dict[str, int] = {}
        for d in self.w.deliveries:
            expected[d.sha] = expected.get(d.sha, 0) + 1
        for sha, n in expected.items():
            have = len(found.get(sha, [])) + self.w.collected.get(sha, 0)
            names = [d.name for d in self.w.deliveries if d.sha == sha]
            assert have == n, f"delivered {names}: {n} file(s), found {found.get(sha, [])}"
        for p in self.dr.quarantine.iterdir() if self.dr.quarantine.exists() else []:
            if _is_batch(p):
                assert (p.parent / f"{p.name}.reason.json").exists(), f"{p.name} quarantined without a reason"
        for name, ident in self.w.label_files:
            places = [self.dr.dir(s) / "labels" / name for s in ("landing", "archive", "quarantine")]
            here = [p for p in places if p.is_symlink() or p.exists()]
            if not ident.startswith("link:"):
                qdir = self.dr.quarantine / "labels"
                here += [
                    p
                    for p in (qdir.iterdir() if qdir.exists() else [])
                    if p.name.startswith(name + ".") and not p.name.endswith(".json")
                ]
            assert len(here) >= 1, f"labels file {name} is nowhere"

    @invariant()
    def bad_deliveries_are_quarantined(self) -> None:
        for d in self.w.deliveries:
            if d.expect_quarantine is None:
                continue
            p = self._locate(d.sha)
            if p is not None and p.parent == self.dr.archive:
                raise AssertionError(f"{d.name} ({d.kind}: {d.expect_quarantine}) was archived as {p.name}")

    @invariant()
    def predictions_belong_to_their_batch(self) -> None:
        if not self.dr.archive.exists():
            return
        for p in self.dr.archived():
            sha = _sha(p)
            if sha not in self.w.predictions:
                continue
            files = self.dr.all_batch_predictions(p.name)
            stem = p.name.rsplit(".", 1)[0]
            if not files and any(n.startswith(f"{stem}.v") for n in self.w.gc_predictions):
                continue  # gc removed them, past retention.predictions
            for f in files:
                got = pd.read_parquet(f)["prediction"].to_numpy()
                mine = self.w.predictions[sha]
                if len(got) == len(mine) and np.allclose(got, mine):
                    break
            else:
                raise AssertionError(
                    f"archived batch {p.name}: none of its stored predictions {[f.name for f in files]} "
                    f"are the ones its rows got"
                )

    @invariant()
    def registered_versions_keep_their_snapshot(self) -> None:
        from retrainer.tracking import runs as tracking

        for mv in tracking.client().search_model_versions(f"name = '{MODEL}'"):
            sha = mv.tags.get("retrainer.snapshot_sha256")
            assert (self.dr.snapshots / sha).is_dir(), f"registered v{mv.version} has no snapshot {sha[:12]}"

    @invariant()
    def cooldown_holds(self) -> None:
        requests = [i for i, r in enumerate(self.w.decisions.values()) if r]
        gaps = [b - a for a, b in itertools.pairwise(requests)]
        cd = self.cfg.triggers.cooldown_batches
        assert all(g > cd for g in gaps), f"retrain requests at decisions {requests} (cooldown_batches {cd})"


def test_stateful_machine(template: Template) -> None:
    RetrainerMachine.tmpl = template
    machine_settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=os.environ.get("RETRAINER_STATEFUL_RANDOM") != "1",  # 1: new examples on each run
        suppress_health_check=list(HealthCheck),
        database=None,
        print_blob=True,
        # RETRAINER_STATEFUL_SHRINK=0: report the first failing sequence as found (exploring), not minimal
        **(
            {"phases": [Phase.explicit, Phase.generate]}
            if os.environ.get("RETRAINER_STATEFUL_SHRINK") == "0"
            else {}
        ),
    )
    from hypothesis.stateful import run_state_machine_as_test

    try:
        run_state_machine_as_test(RetrainerMachine, settings=machine_settings)
    finally:
        steps = sum(v for k, v in STATS.items() if k.split()[0] in RULES)
        print(f"\nstateful: {STATS.get('examples', 0)} examples, {steps} steps")
        for k in sorted(STATS):
            print(f"  {k}: {STATS[k]}")
        print(
            "  seconds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(SECONDS.items(), key=lambda kv: -kv[1]))
        )


# -- the minimal failing sequences found for known defects, as regression tests ------------------------------
def _replay(template: Template, *steps: tuple[str, dict[str, Any]]) -> None:
    """Run ``steps`` (rule name, arguments) on a fresh machine, checking every invariant after each."""
    RetrainerMachine.tmpl = template
    m = RetrainerMachine()
    invariants = [
        m.nothing_is_lost,
        m.bad_deliveries_are_quarantined,
        m.predictions_belong_to_their_batch,
        m.registered_versions_keep_their_snapshot,
        m.cooldown_holds,
    ]
    try:
        for name, kwargs in steps:
            getattr(m, name)(**kwargs)
            for check in invariants:
                check()
    finally:
        m.teardown()


NORMAL = {"kind": "normal", "rows": 168, "flags": "none", "csv": False}


def _batch(**kw: Any) -> tuple[str, dict[str, Any]]:
    return ("deliver_batch", {**NORMAL, **kw})


MONITOR = ("monitor_step", {"fault": None})


def test_one_row_stamped_now_is_quarantined(template: Template) -> None:
    _replay(template, _batch(kind="one_row_now"), MONITOR)


def test_gc_keeps_the_training_window_when_labels_lag(template: Template) -> None:
    unlabelled = _batch(kind="unlabelled")
    _replay(template, unlabelled, MONITOR, unlabelled, MONITOR, unlabelled, MONITOR, ("gc", {"days": 0}))


def test_gc_during_a_retrain_keeps_its_snapshot(template: Template) -> None:
    _replay(template, _batch(), MONITOR, ("retrain", {"stop_after": None, "gc_days": 8}))


def test_time_column_with_utc_offset(template: Template) -> None:
    _replay(template, _batch(kind="utc_z", csv=True), MONITOR, ("gc", {"days": 0}))


def test_reexport_of_the_same_rows_is_a_duplicate(template: Template) -> None:
    _replay(template, _batch(), MONITOR, _batch(kind="reexport"), MONITOR)


def test_redelivery_under_an_archived_name_keeps_each_batchs_predictions(template: Template) -> None:
    _replay(template, _batch(), MONITOR, _batch(kind="same_name"), MONITOR)


def test_flags_for_unknown_ids_do_not_count(template: Template) -> None:
    _replay(template, _batch(flags="unknown_ids"), MONITOR)


def test_empty_flags_sidecar(template: Template) -> None:
    _replay(template, _batch(flags="empty"), MONITOR)


def test_labels_symlink_to_a_folder(template: Template) -> None:
    _replay(template, ("deliver_labels", {"which": "dir_link"}), _batch(), MONITOR)


def test_dangling_labels_symlink(template: Template) -> None:
    _replay(template, ("deliver_labels", {"which": "dangling_link"}), _batch(), MONITOR)
