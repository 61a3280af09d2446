"""Pre-deployment checks (slices, behaviour) and ``reproduce`` against a real MLflow SQLite store.

One champion is trained per module through the real retrain stage functions (no Airflow). Tests run in
file order: the snapshot is tampered with last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from retrainer import settings
from retrainer.config import parse_config
from retrainer.exceptions import SnapshotIntegrityError
from retrainer.gates import checks
from retrainer.stages import retrain
from retrainer.storage import DataRoot
from retrainer.tracking import registry

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def env(tmp_path_factory, point_state):
    tmp = tmp_path_factory.mktemp("checks")
    with pytest.MonkeyPatch.context() as mp:
        yield point_state(mp, tmp)


def variant(cfg: Any, **validation: Any) -> Any:
    raw = yaml.safe_load(Path(cfg.source).read_text())
    raw["validation"].update(validation)
    return parse_config(raw, cfg.source)


@pytest.fixture(scope="module")
def champ(env, bikeshare_cfg, bikeshare_weeks) -> dict[str, Any]:
    cfg = bikeshare_cfg
    dr = DataRoot(settings.data_root(), cfg.name)
    dr.import_batch(pd.concat([w for _, w in bikeshare_weeks[:6]]), "history.parquet", stage="archive")
    trigger = retrain.resolve_trigger("manual", [], {"reason": "first champion"})
    snap = retrain.snapshot(cfg)
    trained = retrain.train(cfg, snap, trigger)
    evaluation = retrain.evaluate(cfg, snap, trained)
    registered = retrain.register(cfg, snap, trained, evaluation, trigger)
    retrain.promote(cfg, registered, evaluation, trigger)
    from retrainer.ml.train import split_holdout
    from retrainer.storage.snapshots import load_snapshot
    from retrainer.tracking.artifacts import load_run_model

    train_df, holdout = split_holdout(cfg, load_snapshot(dr.snapshots, snap["sha256"]))
    return {
        "snap": snap,
        "trained": trained,
        "evaluation": evaluation,
        "model": load_run_model(trained["run_id"], cfg),
        "train": train_df,
        "holdout": holdout,
    }


def _dummy(cfg: Any, train_df: pd.DataFrame) -> Any:
    from sklearn.dummy import DummyRegressor
    from sklearn.pipeline import Pipeline

    from retrainer.ml.train import build_pipeline

    pipe = build_pipeline(cfg)
    pipe = Pipeline([("pre", pipe.named_steps["pre"]), ("model", DummyRegressor())])
    return pipe.fit(train_df[cfg.data.feature_names], train_df[cfg.data.target])


def test_default_checks_pass_for_a_good_model_and_are_recorded(champ) -> None:
    names = {c["name"]: c["passed"] for c in champ["evaluation"]["model_checks"]}

    assert names == {"prediction_range": True, "min_functionality": True}
    assert champ["evaluation"]["passed"] is True


def test_slice_and_functionality_checks_name_what_failed(bikeshare_cfg, champ) -> None:
    cfg = variant(bikeshare_cfg, slices=[{"column": "weathersit", "max_degradation": 0.25, "min_rows": 20}])
    dummy = _dummy(cfg, champ["train"])

    results = checks.run_checks(cfg, dummy, champ["model"], champ["holdout"], champ["train"])
    failed = [r for r in results if not r.passed]

    slice_names = {r.name for r in results if r.name.startswith("slice ")}
    counts = champ["holdout"]["weathersit"].value_counts()
    assert slice_names == {f"slice weathersit={v}" for v, n in counts.items() if n >= 20}
    assert {r.name for r in failed} >= slice_names | {"min_functionality"}
    assert all("vs champion" in r.detail and "rmse" in r.detail for r in failed if r.name.startswith("slice"))
    # the champion against itself passes every slice
    same = checks.slice_checks(cfg, champ["model"], champ["model"], champ["holdout"])
    assert same and all(r.passed for r in same)


def test_invariance_and_range_checks(bikeshare_cfg, champ) -> None:
    calm = variant(bikeshare_cfg, behaviour={"invariance": {"features": ["windspeed"], "noise": 0.01}})
    shaken = variant(
        bikeshare_cfg, behaviour={"invariance": {"features": ["hr"], "noise": 2.0, "tolerance": 0.05}}
    )
    capped = variant(bikeshare_cfg, behaviour={"prediction_range": {"max": 10}})

    ok = checks.invariance_check(calm, champ["model"], champ["holdout"], champ["train"])
    bad = checks.invariance_check(shaken, champ["model"], champ["holdout"], champ["train"])
    from retrainer.ml.train import predict

    rng = checks.range_check(capped, predict(capped, champ["model"], champ["holdout"]), champ["train"])

    assert ok is not None and ok.passed, ok
    assert bad is not None and not bad.passed and "hr" in bad.detail, bad
    assert rng is not None and not rng.passed and "outside [" in rng.detail, rng


def test_failed_checks_are_named_in_the_rejection_record(bikeshare_cfg, champ) -> None:
    from retrainer.tracking.runs import client

    cfg = variant(bikeshare_cfg, behaviour={"prediction_range": {"max": 10}})
    out = retrain.evaluate(cfg, champ["snap"], champ["trained"])

    assert out["passed"] is False
    assert any(f.startswith("prediction_range:") for f in out["failed_checks"]), out["failed_checks"]
    tags = client().get_run(champ["trained"]["run_id"]).data.tags
    assert tags["retrainer.outcome"] == "rejected"
    assert "prediction_range" in tags["retrainer.validation"]


def test_reproduce_gives_identical_metrics(bikeshare_cfg, champ, capsys) -> None:
    import json

    from retrainer.cli import main

    assert main(["reproduce", "bikeshare", "1", "--json"]) == 0  # the CLI path, one refit
    out = json.loads(capsys.readouterr().out)

    assert out["match"] is True and out["predictions_match"] is True
    assert out["config_fingerprint"] == out["recorded_fingerprint"] == bikeshare_cfg.fingerprint
    assert out["metrics"]["rmse"]["recorded"] == out["metrics"]["rmse"]["reproduced"]
    assert out["metrics"]["rmse"]["recorded"] == champ["trained"]["holdout"]["rmse"]
    assert set(out["metrics"]) == {"rmse", "mae", "r2"}


def test_rejected_challenger_is_retired_and_never_staged_again(bikeshare_cfg, champ) -> None:
    from retrainer.stages import promotion

    raw = yaml.safe_load(Path(bikeshare_cfg.source).read_text())
    raw["promotion"] = {"mode": "approval"}
    raw["model"]["params"]["max_iter"] = 50  # another config: a new training run and version
    cfg = parse_config(raw, bikeshare_cfg.source)
    trigger = retrain.resolve_trigger("manual", [], {"reason": "smaller model"})
    trained = retrain.train(cfg, champ["snap"], trigger)
    version = retrain.register(
        cfg, champ["snap"], trained, {"passed": True, "candidate": trained["holdout"]}, trigger
    )["version"]

    staged = promotion.stage(cfg, version, "test", by="test")
    assert (staged["alias"], staged["awaiting"]) == ("challenger", "approval")
    assert registry.champion("bikeshare").version == 1  # waiting for a person
    out = promotion.apply_approval(
        cfg, staged, {"chosen_options": ["Reject"], "responded_by_user": {"name": "bob"}}, "t"
    )

    assert out["decision"] == "rejected"
    assert registry.challenger("bikeshare") is None
    assert registry.champion("bikeshare").version == 1
    last = registry.history("bikeshare")[-1]
    assert (last["action"], last["from_version"], last["to_version"]) == ("retire", version, None)
    assert "bob" in last["by"]
    assert promotion.stage(cfg, version, "re-run", by="test")["alias"] is None  # not revived


def test_tampered_snapshot_is_refused(champ, capsys) -> None:
    from retrainer.cli import main
    from retrainer.stages.reproduce import reproduce

    path = champ["snap"]["path"] + "/data.parquet"
    df = pd.read_parquet(path)
    df.loc[0, "bikers"] = df.loc[0, "bikers"] + 1  # one label changed after the fact
    df.to_parquet(path, index=False)

    with pytest.raises(SnapshotIntegrityError, match="has been modified"):
        reproduce("bikeshare", 1)
    assert main(["reproduce", "bikeshare", "1"]) == 2
    assert "has been modified" in capsys.readouterr().err
    assert registry.champion("bikeshare").version == 1  # refusing to reproduce touches nothing
