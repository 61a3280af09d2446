"""The reliability matrix: bad inputs through the real monitor DAG, faults, and a storm of drifted batches.

One model (``reliability``, a copy of the bikeshare config with a 1 s poke) and one champion trained once
for the module. Bad inputs each go through a real ``dag.test()`` run of the monitor DAG; faults kill a stage
with SIGKILL in a subprocess at a precise point (a profile hook on the call that moves or registers) and
re-run it, re-run every task of both DAGs, race two retrains, replay duplicate asset events and take the
tracking store away during a decide. The storm drives the monitor stage functions (the tasks' bodies,
without Airflow; drift numbers without the HTML report) for 50 drifted batches delivered at once. After each: every delivered file is archived or
quarantined, no registered version is duplicated, the champion passed validation, one decision record per
batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retrainer.tracking import policy_state
from tests.support.champion import train_first_champion

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "reliability"
STORM = "storm"


@dataclass
class World:
    cfg: Any
    dr: Any
    weeks: list[tuple[str, pd.DataFrame]]
    config_path: Path
    delivered: list[str] = field(default_factory=list)  # names as they landed (decision records use them)
    seeded: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def world(airflow_env: Path, bikeshare_weeks):
    from devtools import harness
    from retrainer import settings
    from retrainer.config import load_config
    from retrainer.storage import DataRoot

    base = airflow_env / "reliability"
    keys = ("RETRAINER_DATA_ROOT", "MLFLOW_TRACKING_URI", "RETRAINER_ARTIFACT_ROOT")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["RETRAINER_DATA_ROOT"] = str(base / "data")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    os.environ["RETRAINER_ARTIFACT_ROOT"] = str(base / "mlartifacts")
    config_path = Path(os.environ["RETRAINER_CONFIG_DIR"]) / f"{MODEL}.yaml"
    text = (REPO / "include" / "models" / "bikeshare.yaml").read_text()
    config_path.write_text(
        text.replace("name: bikeshare", f"name: {MODEL}").replace(
            "poke_interval_seconds: 15", "poke_interval_seconds: 1"
        )
    )
    harness.reload_dags()
    cfg = load_config(config_path)
    dr = DataRoot(settings.data_root(), MODEL).ensure()
    dr.import_batch(
        pd.concat([w for _, w in bikeshare_weeks[:6]]), "2011-00-history.parquet", stage="archive"
    )
    train_first_champion(cfg)
    try:
        yield World(cfg, dr, bikeshare_weeks, config_path, seeded={"2011-00-history.parquet"})
    finally:
        config_path.unlink()
        harness.reload_dags()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- helpers -------------------------------------------------------------------------------------------------
def clean(world: World, seed: int, frac: float = 0.4) -> pd.DataFrame:
    """Rows of the champion's own recent weeks: a batch that neither fails the gate nor drifts."""
    return (
        pd.concat([w for _, w in world.weeks[4:6]])
        .sample(frac=frac, random_state=seed)
        .sort_values("timestamp")
    )


def deliver(world: World, name: str, payload: bytes | pd.DataFrame) -> Path:
    """A producer following the delivery contract: write under a temporary name, rename into landing."""
    tmp = world.dr.landing / f".{name}.part"
    if isinstance(payload, pd.DataFrame):
        payload.to_parquet(tmp, index=False) if name.endswith(".parquet") else payload.to_csv(
            tmp, index=False
        )
    else:
        tmp.write_bytes(payload)
    dest = world.dr.landing / name
    os.replace(tmp, dest)
    world.delivered.append(name)
    return dest


def run_monitor(logical_date: datetime | None = None) -> dict[str, Any]:
    from devtools import harness

    return harness.run_dag(f"{MODEL}__monitor", logical_date=logical_date)


def xcom(res: dict[str, Any], task_id: str) -> Any:
    from devtools import harness

    return harness.xcom(res["dag_id"], res["run_id"], task_id)


def decision_records(model: str = MODEL) -> dict[str, list[str]]:
    from retrainer.tracking import runs as tracking

    out: dict[str, list[str]] = {}
    page = None
    c = tracking.client()
    exp = tracking.experiment_id(model, "monitor")
    while True:
        runs = c.search_runs([exp], max_results=1000, page_token=page)
        for r in runs:
            if r.data.tags.get("retrainer.kind") == "monitor":
                out.setdefault(r.data.tags.get("retrainer.batch", ""), []).append(
                    r.data.tags.get("retrainer.verdict")
                )
        page = runs.token
        if not page:
            return out


def invariants(world: World, model: str = MODEL) -> None:
    """Nothing lost or duplicated; no duplicate registered version; the champion passed validation; one
    decision record per delivered batch."""
    from retrainer.storage import FLAGS_SUFFIX, DataRoot, settle_seconds
    from retrainer.tracking import registry
    from retrainer.tracking import runs as tracking

    dr = world.dr if model == MODEL else DataRoot(world.dr.root, model)

    def batches(folder: Path) -> list[Path]:
        if not folder.exists():
            return []
        return [
            p
            for p in folder.iterdir()
            if (p.is_file() or p.is_symlink())
            and not p.name.endswith((".reason.json", FLAGS_SUFFIX))
            and p.name not in world.seeded
        ]

    archived, quarantined = batches(dr.archive), batches(dr.quarantine)
    assert batches(dr.processing) == []
    assert dr.pending(settle=settle_seconds()) == []
    assert len(archived) + len(quarantined) == len(world.delivered), (archived, quarantined, world.delivered)
    for q in quarantined:
        reason = json.loads(q.with_name(q.name + ".reason.json").read_text())
        assert reason["message"] and reason.get("decision_run"), q.name
    c = tracking.client()
    versions = c.search_model_versions(f"name = '{model}'")
    keys = [v.tags.get("retrainer.run_key") for v in versions]
    assert len(keys) == len(set(keys)), keys
    champ = registry.champion(model)
    assert champ is not None
    assert c.get_run(champ.run_id).data.tags.get("retrainer.outcome") == "validated"
    records = decision_records(model)
    for name in world.delivered:
        assert len(records.get(name, [])) == 1, (name, records.get(name))


# -- bad input, each through the real monitor DAG --------------------------------------------------------------
def _bad_inputs(world: World) -> list[tuple[str, str, Any, list[str]]]:
    """(kind, file name, payload, words the message must contain: file, column, what)."""
    base = clean(world, 11)
    text = base.to_csv(index=False)
    wide = base.copy()
    wide["promo_code"] = "x"
    future = base.assign(timestamp=base["timestamp"].astype(str))
    future.iloc[2, future.columns.get_loc("timestamp")] = "2099-06-01 00:00:00"
    unparseable = base.assign(timestamp=base["timestamp"].astype(str))
    unparseable.iloc[2, unparseable.columns.get_loc("timestamp")] = "half past noon"
    parquet = base.to_parquet(index=False)
    archived = world.dr.archive / "2011-00-history.parquet"
    return [
        ("empty file", "2011-20-empty.csv", b"", ["2011-20-empty.csv", "cannot read"]),
        (
            "header only",
            "2011-20-header.csv",
            text.splitlines()[0].encode() + b"\n",
            ["2011-20-header.csv", "row count"],
        ),
        (
            "wrong delimiter",
            "2011-20-semicolon.csv",
            base.to_csv(index=False, sep=";").encode(),
            ["2011-20-semicolon.csv", "'hum'"],
        ),
        (
            "wrong encoding",
            "2011-20-utf16.csv",
            text.encode("utf-16"),
            ["2011-20-utf16.csv", "cannot read", "utf-8"],
        ),
        (
            "missing column",
            "2011-20-nohum.csv",
            base.drop(columns=["hum"]).to_csv(index=False).encode(),
            ["2011-20-nohum.csv", "'hum'", "missing"],
        ),
        (
            "column renamed",
            "2011-20-renamed.csv",
            base.rename(columns={"hum": "humidity"}).to_csv(index=False).encode(),
            ["2011-20-renamed.csv", "'hum'"],
        ),
        (
            "wrong dtype",
            "2011-20-dtype.csv",
            base.assign(temp="warm").to_csv(index=False).encode(),
            ["2011-20-dtype.csv", "'temp'"],
        ),
        (
            "all-null feature",
            "2011-20-nullhum.csv",
            base.assign(hum=None).to_csv(index=False).encode(),
            ["2011-20-nullhum.csv", "'hum'", "null"],
        ),
        (
            "out-of-range values",
            "2011-20-range.csv",
            base.assign(temp=5.0).to_csv(index=False).encode(),
            ["2011-20-range.csv", "'temp'", "between"],
        ),
        (
            "unseen category",
            "2011-20-category.csv",
            base.assign(weathersit="tornado").to_csv(index=False).encode(),
            ["2011-20-category.csv", "'weathersit'", "tornado"],
        ),
        (
            "unparseable timestamp",
            "2011-20-badtime.csv",
            unparseable.to_csv(index=False).encode(),
            ["2011-20-badtime.csv", "'timestamp'", "cannot be parsed"],
        ),
        (
            "far-future timestamp",
            "2011-20-future.csv",
            future.to_csv(index=False).encode(),
            ["2011-20-future.csv", "'timestamp'", "future"],
        ),
        (
            "duplicate batch",
            "2011-20-resent.parquet",
            archived.read_bytes(),
            ["2011-20-resent.parquet", "duplicate", "2011-00-history.parquet"],
        ),
        (
            "truncated file",
            "2011-20-truncated.parquet",
            parquet[: len(parquet) // 2],
            ["2011-20-truncated.parquet", "cannot read"],
        ),
        ("extra column", "2011-20-extra.csv", wide.to_csv(index=False).encode(), []),
    ]


def test_bad_inputs_through_the_monitor_dag(world: World) -> None:
    from retrainer.tracking import registry

    champion = registry.champion(MODEL).version
    outcomes = {}
    for kind, name, payload, words in _bad_inputs(world):
        deliver(world, name, payload)

        res = run_monitor()

        outcomes[kind] = res["state"]
        if not words:  # an extra column is accepted and named; the model reads its configured columns
            assert res["state"] == "success", (kind, res)
            assert xcom(res, "validate_batch")["extra_columns"] == ["promo_code"]
            assert (world.dr.archive / name).exists()
            continue
        assert res["state"] == "failed", (kind, res)
        assert res["tasks"]["validate_batch"]["state"] == "failed", kind
        assert res["tasks"]["request_retrain"]["state"] != "success", kind
        reason = world.dr.quarantine_reason(name)
        assert reason is not None, kind
        for word in words:
            assert word in reason["message"], (kind, word, reason["message"])
        assert (world.dr.quarantine / name).exists(), kind
        assert registry.champion(MODEL).version == champion, kind
    assert len(outcomes) >= 15
    invariants(world)


def test_files_that_can_never_be_batches_are_quarantined_by_the_sensor(world: World, tmp_path: Path) -> None:
    """Very large file (sparse, 1.1 GB), traversal-like and unsafe names, symbolic links, other suffixes:
    refused by name, size or kind before anything reads them; a good batch delivered with them goes on."""
    from retrainer.tracking import registry

    champion = registry.champion(MODEL).version
    huge = world.dr.landing / ".2011-21-huge.csv.part"
    with huge.open("wb") as fh:
        fh.truncate(1_100_000_000)  # sparse: ≥ 1 GB to the file system, no blocks written
    os.replace(huge, world.dr.landing / "2011-21-huge.csv")
    world.delivered.append("2011-21-huge.csv")
    deliver(world, "2011-21-..%2F..%2Fpasswd.csv", b"timestamp\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("timestamp\n2011-01-01\n")
    (world.dr.landing / "2011-21-link.csv").symlink_to(outside)
    world.delivered.append("2011-21-link.csv")
    deliver(world, "2011-21-upper.CSV", clean(world, 12).to_csv(index=False).encode())
    deliver(world, "2011-21-sheet.xlsx", b"PK\x03\x04")
    deliver(world, "2011-21-good.parquet", clean(world, 13))

    res = run_monitor()

    assert res["state"] == "success", res
    assert xcom(res, "claim_batch")["batch"] == "2011-21-good.parquet"
    assert outside.read_text() == "timestamp\n2011-01-01\n"
    expect = {
        "2011-21-huge.csv": "RETRAINER_MAX_BATCH_BYTES",
        "2011-21-link.csv": "symbolic link",
        "2011-21-upper.CSV": "unsupported batch format",
        "2011-21-sheet.xlsx": "unsupported batch format",
        "2011-21-.._2F.._2Fpasswd.csv": "unsafe",
    }
    for stored, word in expect.items():
        reason = json.loads((world.dr.quarantine / f"{stored}.reason.json").read_text())
        assert word in reason["message"], (stored, reason)
        assert reason["delivered_as"] in world.delivered
    assert registry.champion(MODEL).version == champion
    # records are keyed by the quarantined file's name: map the traversal name to its stored name
    world.delivered[world.delivered.index("2011-21-..%2F..%2Fpasswd.csv")] = "2011-21-.._2F.._2Fpasswd.csv"
    invariants(world)


# -- faults ----------------------------------------------------------------------------------------------------
KILLER = r"""
import json, os, signal, sys
from retrainer.stages import monitor
from retrainer.stages import retrain
from retrainer.config import load_config

cfg = load_config(sys.argv[1])
stage, point = sys.argv[2], sys.argv[4]
args = json.loads(sys.argv[3])

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def hook(frame, event, arg):
    if point == "after_link" and event == "c_return" and arg is os.link and frame.f_code.co_name == "_move_no_overwrite":
        die()
    if point == "before_rename" and event == "c_call" and arg is os.rename and frame.f_code.co_name == "create_snapshot":
        die()
    if (point == "after_create_model_version" and event == "return"
            and frame.f_code.co_name == "create_model_version" and "mlflow/tracking/client.py" in frame.f_code.co_filename):
        die()

fn = {"archive": monitor.archive_batch, "snapshot": retrain.snapshot, "register": retrain.register}[stage]
sys.setprofile(hook)
fn(cfg, *args)
sys.setprofile(None)
print("finished without being killed")
"""


def kill_during(world: World, stage: str, args: list[Any], point: str) -> None:
    """Run one stage in a subprocess and SIGKILL it at ``point``."""
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(world.config_path), stage, json.dumps(args), point],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])


def through_stages(world: World, run_id: str) -> dict[str, Any]:
    from retrainer.stages import monitor

    cfg = world.cfg
    claim = monitor.claim_batch(cfg, run_id)
    val = monitor.validate_batch(cfg, claim, run_id)
    scored = monitor.score_batch(cfg, claim)
    drift = monitor.measure_drift(cfg, claim, scored)
    perf = monitor.performance(cfg, claim, scored)
    flags = monitor.flagged_rate(cfg, claim, val)
    return {"claim": claim, "val": val, "scored": scored, "drift": drift, "perf": perf, "flags": flags}


def test_fault_kill_during_archive_then_snapshot_then_register(world: World) -> None:
    from retrainer.stages import monitor, retrain
    from retrainer.tracking import registry
    from retrainer.tracking import runs as tracking

    cfg = world.cfg
    name, week = world.weeks[6]  # the warm spell after the history: a retrain that passes
    deliver(world, f"{name}.parquet", week)
    s = through_stages(world, "fault-archive")
    decision = monitor.decide(
        cfg, s["claim"], s["val"], s["scored"], s["drift"], s["perf"], s["flags"], "fault-archive"
    )

    kill_during(world, "archive", [s["claim"]], "after_link")  # linked into archive, not yet unlinked

    assert (world.dr.processing / f"{name}.parquet").exists() and (
        world.dr.archive / f"{name}.parquet"
    ).exists()
    monitor.archive_batch(cfg, s["claim"])  # the retry
    assert not (world.dr.processing / f"{name}.parquet").exists()
    assert sorted(p.name for p in world.dr.archive.glob(f"{name}*")) == [f"{name}.parquet"]
    assert decision["verdict"] == "retrain"

    trigger = retrain.resolve_trigger(
        "asset_triggered", [{"extra": {"reasons": decision["reasons"], "batch": f"{name}.parquet"}}], {}
    )
    kill_during(world, "snapshot", [None, trigger["batches"]], "before_rename")
    snap = retrain.snapshot(cfg, None, trigger["batches"])
    assert snap["created"] is True and f"{name}.parquet" in snap["sources"]
    finished = [p for p in world.dr.snapshots.iterdir() if not p.name.startswith(".")]
    assert all((p / "manifest.json").exists() for p in finished)  # a killed writer leaves only a .tmp- folder

    retrain.gate(cfg, snap)
    trained = retrain.train(cfg, snap, trigger, "fault-retrain")
    ev = retrain.evaluate(cfg, snap, trained)
    assert ev["passed"], ev
    before = len(tracking.client().search_model_versions(f"name = '{MODEL}'"))
    kill_during(world, "register", [snap, trained, ev, trigger], "after_create_model_version")
    reg = retrain.register(cfg, snap, trained, ev, trigger)  # the retry finds the version the killed run made
    retrain.promote(cfg, reg, ev, trigger, "fault-retrain")

    assert reg["created"] is False
    assert len(tracking.client().search_model_versions(f"name = '{MODEL}'")) == before + 1
    assert registry.champion(MODEL).version == reg["version"]
    invariants(world)


def test_fault_every_task_of_both_dags_rerun_after_success(world: World) -> None:
    from devtools import harness
    from retrainer.tracking import runs as tracking

    deliver(world, "2011-22-rerun.parquet", clean(world, 14))
    when = datetime.now(UTC).replace(microsecond=0)
    first = run_monitor(when)
    again = run_monitor(when)  # same logical date: the same run, every task again

    assert first["state"] == again["state"] == "success", (first, again)
    assert first["run_id"] == again["run_id"]
    assert xcom(again, "claim_batch")["batch"] == "2011-22-rerun.parquet"
    assert xcom(again, "decide")["mlflow_run_id"] == xcom(first, "decide")["mlflow_run_id"]
    assert (world.dr.archive / "2011-22-rerun.parquet").exists()

    versions = len(tracking.client().search_model_versions(f"name = '{MODEL}'"))
    snapshots = sorted(p.name for p in world.dr.snapshots.iterdir())
    r1 = harness.run_dag(f"{MODEL}__retrain", {"reason": "scheduled refresh"}, logical_date=when)
    versions_after_first = len(tracking.client().search_model_versions(f"name = '{MODEL}'"))
    r2 = harness.run_dag(f"{MODEL}__retrain", {"reason": "scheduled refresh"}, logical_date=when)

    assert r1["state"] == r2["state"] == "success", (r1, r2)
    assert xcom(r2, "train")["reused"] is True
    assert (
        len(tracking.client().search_model_versions(f"name = '{MODEL}'"))
        == versions_after_first
        <= versions + 1
    )
    assert len(set(sorted(p.name for p in world.dr.snapshots.iterdir())) - set(snapshots)) <= 1
    invariants(world)


RETRAIN_CHAIN = r"""
import json, sys
from retrainer.stages import retrain
from retrainer.config import load_config
from retrainer.exceptions import ModelRejected

cfg = load_config(sys.argv[1])
trigger = json.loads(sys.argv[2])
snap = retrain.snapshot(cfg)
retrain.gate(cfg, snap)
trained = retrain.train(cfg, snap, trigger, sys.argv[3])
ev = retrain.evaluate(cfg, snap, trained, trigger["force"])
try:
    reg = retrain.register(cfg, snap, trained, ev, trigger)
except ModelRejected as exc:
    print(json.dumps({"rejected": str(exc)}))
else:
    retrain.promote(cfg, reg, ev, trigger, sys.argv[3])
    print(json.dumps(reg))
"""


def test_fault_two_retrains_at_once_and_duplicate_asset_events(world: World, tmp_path: Path) -> None:
    from retrainer.stages import retrain
    from retrainer.tracking import registry
    from retrainer.tracking import runs as tracking

    name, week = world.weeks[7]
    deliver(world, f"{name}.parquet", week)
    s = through_stages(world, "fault-two")
    from retrainer.stages import monitor

    decision = monitor.decide(
        world.cfg, s["claim"], s["val"], s["scored"], s["drift"], s["perf"], s["flags"], "fault-two"
    )
    monitor.archive_batch(world.cfg, s["claim"])
    event = {"extra": {"reasons": decision["reasons"] or ["storm"], "batch": f"{name}.parquet"}}
    trigger = retrain.resolve_trigger("asset_triggered", [event, event], {"force": True})  # delivered twice
    assert trigger["batches"] == [f"{name}.parquet"] and len(trigger["reasons"]) == len(
        set(trigger["reasons"])
    )
    before = len(tracking.client().search_model_versions(f"name = '{MODEL}'"))

    logs = [(tmp_path / f"race-{i}.out", tmp_path / f"race-{i}.err") for i in range(2)]
    procs = []
    for i, (out, err) in enumerate(logs):  # files, not pipes: a full pipe would stall one racer mid-write
        with out.open("w") as fo, err.open("w") as fe:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        RETRAIN_CHAIN,
                        str(world.config_path),
                        json.dumps(trigger),
                        f"race-{i}",
                    ],
                    stdout=fo,
                    stderr=fe,
                )
            )
    for p, (_, err) in zip(procs, logs, strict=True):
        assert p.wait(timeout=900) == 0, err.read_text()[-3000:]
    results = [json.loads(out.read_text().strip().splitlines()[-1]) for out, _ in logs]

    versions = tracking.client().search_model_versions(f"name = '{MODEL}'")
    registered = {r["version"] for r in results if "version" in r}
    assert len(registered) == 1 and len(versions) == before + 1
    assert sorted(r["created"] for r in results) == [False, True]
    version = registered.pop()
    assert registry.champion(MODEL).version == version
    promotions = [
        e for e in registry.history(MODEL) if e["alias"] == "champion" and e["to_version"] == version
    ]
    assert len(promotions) == 1  # both racers may record the move; the history shows it once
    invariants(world)


def test_fault_tracking_store_unavailable_during_decide(world: World) -> None:
    from retrainer.exceptions import RetrainerError
    from retrainer.stages import monitor
    from retrainer.tracking import runs as tracking

    deliver(world, "2011-23-offline.parquet", clean(world, 15))
    s = through_stages(world, "fault-offline")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    os.environ.update(
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="3",
    )
    try:
        with pytest.raises(Exception) as err:
            monitor.decide(
                world.cfg,
                s["claim"],
                s["val"],
                s["scored"],
                s["drift"],
                s["perf"],
                s["flags"],
                "fault-offline",
            )
        assert not isinstance(err.value, RetrainerError)  # not "our" error: Airflow retries the task
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
            os.environ.pop(k)
        tracking.client()
    assert (world.dr.processing / "2011-23-offline.parquet").exists()  # not archived, not lost

    decision = monitor.decide(
        world.cfg, s["claim"], s["val"], s["scored"], s["drift"], s["perf"], s["flags"], "fault-offline"
    )
    monitor.archive_batch(world.cfg, s["claim"])

    assert decision["mlflow_run_id"]
    invariants(world)


# -- the storm ----------------------------------------------------------------------------------------------
def fast_drift(cfg: Any, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The drift numbers without the Evidently HTML (``drift.drift_signals``, held equal to Evidently's
    numbers by tests/unit/test_drift_fast.py): the storm tests the policy and the decision log, and 50
    HTML reports would cost minutes."""
    from retrainer.gates.drift import drift_signals
    from retrainer.stages import batches

    ref = batches.reference_predictions(cfg, batches.run_champion(cfg, claim))
    cur = batches.load_batch(cfg, claim)
    cur["prediction"] = pd.read_parquet(scored["predictions"])["prediction"].to_numpy()
    return drift_signals(cfg, ref, cur)


def test_storm_of_fifty_drifted_batches_retrains_exactly_as_the_cooldown_allows(world: World) -> None:
    """50 drifted batches at once, cooldown_batches=2, no hysteresis, no follow-up: requests on batches 1,
    4, 7, ..., 49, i.e. ceil(50 / 3) = 17; the other 33 are suppressed by the cooldown, each recorded."""
    import shutil

    from retrainer.stages import monitor
    from retrainer.storage import DataRoot
    from retrainer.tracking import registry
    from retrainer.tracking import runs as tracking

    # as the docstring says; the prediction-drift vote at its fixed threshold (auto mode would judge an
    # always-high distance against its own noise after eight batches and stop firing: a unit test's case)
    drift = world.cfg.triggers.prediction_drift.model_copy(update={"mode": "absolute"})
    triggers = world.cfg.triggers.model_copy(update={"cooldown_batches": 2, "prediction_drift": drift})
    cfg = world.cfg.model_copy(update={"name": STORM, "triggers": triggers})
    champ = registry.champion(MODEL)
    storm = DataRoot(world.dr.root, STORM).ensure()
    shutil.copytree(world.dr.snapshots / champ.snapshot_sha256, storm.snapshots / champ.snapshot_sha256)
    version, _ = registry.register(
        STORM, champ.run_id, "storm-seed", {"retrainer.snapshot_sha256": champ.snapshot_sha256}
    )
    registry.move_alias(STORM, registry.CHAMPION, version, action="promote", reason="storm seed", by="test")
    tracking.client().set_tag(champ.run_id, "retrainer.outcome", "validated")
    summer = pd.concat([w for _, w in world.weeks[22:34]])
    assert len(summer) >= 50 * 24
    storm_world = World(cfg, storm, world.weeks, world.config_path)
    for i in range(50):  # all delivered before the first is processed
        rows = summer.iloc[i * 24 : (i + 1) * 24]
        storm.import_batch(rows, f"2011-07-{i:02d}.parquet")
        storm_world.delivered.append(f"2011-07-{i:02d}.parquet")

    verdicts = []
    for i in range(50):
        run = f"storm-{i:02d}"
        claim = monitor.claim_batch(cfg, run)
        val = monitor.validate_batch(cfg, claim, run)
        scored = monitor.score_batch(cfg, claim)
        drift = fast_drift(cfg, claim, scored)
        perf = monitor.performance(cfg, claim, scored)
        flags = monitor.flagged_rate(cfg, claim, val)
        decision = monitor.decide(cfg, claim, val, scored, drift, perf, flags, run)
        monitor.archive_batch(cfg, claim)
        assert decision["rule_met"], (i, decision)  # every batch is drifted: the rule fires on each
        verdicts.append(decision)

    requested = [i for i, d in enumerate(verdicts) if d["retrain"]]
    suppressed = [d for d in verdicts if not d["retrain"]]
    assert requested == list(range(0, 50, 3)) and len(requested) == 17
    assert len(suppressed) == 33 and all(d["suppressed_by"].startswith("cooldown") for d in suppressed)
    records = decision_records(STORM)
    assert sorted(v for vs in records.values() for v in vs) == ["retrain"] * 17 + ["suppressed"] * 33
    head = policy_state.policy_head(cfg.name)
    assert head["decisions"] == 50 and head["retrain_requests"] == 17
    invariants(storm_world, STORM)
