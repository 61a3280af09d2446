"""Schema evolution: a feature added to or removed from the config while a champion serves.

The champion keeps scoring with the feature list it was trained on; the config change takes effect at
the next retrain, which replaces a champion that cannot score the configured features. Real data roots,
real MLflow on SQLite, real GX and Evidently (stage functions, no Airflow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from retrainer import settings
from retrainer.stages import monitor, retrain
from retrainer.storage import DataRoot
from retrainer.tracking import registry
from retrainer.tracking.artifacts import model_config

if TYPE_CHECKING:
    import pandas as pd

pytestmark = pytest.mark.unit
NEW = "windspeed"  # the feature added (a) or removed (b)


def lenient(cfg):
    """A candidate trained on the few weeks that carry the new feature may trail the champion a little."""
    return cfg.model_copy(update={"validation": cfg.validation.model_copy(update={"max_degradation": 0.5})})


def without(cfg, name: str = NEW):
    features = [f for f in cfg.data.features if f.name != name]
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"features": features})})


def retrain_once(cfg, reason: str, force: bool = False) -> dict:
    out: dict = {"trigger": retrain.resolve_trigger("manual", [], {"reason": reason, "force": force})}
    out["snap"] = retrain.snapshot(cfg)
    out["gate"] = retrain.gate(cfg, out["snap"])
    assert out["gate"]["success"], out["gate"]
    out["train"] = retrain.train(cfg, out["snap"], out["trigger"])
    out["evaluation"] = retrain.evaluate(cfg, out["snap"], out["train"], force=force)
    out["registered"] = retrain.register(cfg, out["snap"], out["train"], out["evaluation"], out["trigger"])
    out["promoted"] = retrain.promote(cfg, out["registered"], out["evaluation"], out["trigger"])
    return out


def run_monitor(cfg, dr: DataRoot, name: str, df: pd.DataFrame) -> dict:
    """One batch through the monitor tasks, as the DAG calls them."""
    dr.import_batch(df, f"{name}.parquet", stage="landing")
    run = f"scheduled__{name}"
    claim = monitor.claim_batch(cfg, run)
    out = {"claim": claim, "validation": monitor.validate_batch(cfg, claim, run)}
    out["scored"] = scored = monitor.score_batch(cfg, claim)
    out["drift"] = monitor.measure_drift(cfg, claim, scored)
    out["perf"] = monitor.performance(cfg, claim, scored)
    out["flags"] = monitor.flagged_rate(cfg, claim, out["validation"])
    out["decision"] = monitor.decide(
        cfg, claim, out["validation"], scored, out["drift"], out["perf"], out["flags"], run
    )
    monitor.archive_batch(cfg, claim)
    return out


def test_added_feature_champion_keeps_scoring_and_the_next_retrain_uses_it(
    state, bikeshare_cfg, bikeshare_weeks
):
    old, new = without(bikeshare_cfg), lenient(bikeshare_cfg)
    dr = DataRoot(settings.data_root(), new.name).ensure()
    for start, week in bikeshare_weeks[:6]:  # history exported before the column existed
        dr.import_batch(week.drop(columns=[NEW]), f"{start}.parquet", stage="archive")
    first = retrain_once(old, "first champion")
    assert first["promoted"]["promoted"]
    champ = registry.champion(new.name)
    assert NEW not in model_config(new, champ.run_id).data.feature_names

    # the config gains the feature; the batches carry it from now on
    runs = [run_monitor(new, dr, start, week) for start, week in bikeshare_weeks[6:10]]

    assert not list(dr.quarantine.glob("*.parquet"))
    for r in runs:  # scored by the champion with its own features, every signal measured
        assert r["scored"]["champion_version"] == champ.version
        assert r["scored"]["predictions"] is not None and "unscorable" not in r["scored"]
        assert r["perf"]["value"] is not None and r["drift"]["data_drift_share"] is not None
        assert NEW not in r["drift"]["column_drift"]  # the champion does not read it
    assert len(dr.archived()) == 10

    second = retrain_once(new, "feature added")

    assert second["evaluation"]["passed"], second["evaluation"]["failed_checks"]
    assert second["evaluation"]["champion_version"] == champ.version
    assert "champion_unscorable" not in second["evaluation"]  # compared on its own features
    assert second["evaluation"]["champion"]  # and it was scored
    assert second["promoted"]["promoted"]
    now = registry.champion(new.name)
    assert now.version == second["registered"]["version"] != champ.version
    assert NEW in model_config(new, now.run_id).data.feature_names
    # the snapshot trains on the batches that carry the new feature only
    assert set(second["snap"]["sources"]) == {f"{s}.parquet" for s, _ in bikeshare_weeks[6:10]}
    after = run_monitor(new, dr, *bikeshare_weeks[10])
    assert after["scored"]["champion_version"] == now.version and after["perf"]["value"] is not None


@pytest.mark.parametrize("force", [False, True], ids=["triggered", "forced"])
def test_removed_feature_champion_cannot_score_and_the_next_retrain_replaces_it(
    state, bikeshare_cfg, bikeshare_weeks, force
):
    old, new = bikeshare_cfg, without(bikeshare_cfg)
    dr = DataRoot(settings.data_root(), new.name).ensure()
    for start, week in bikeshare_weeks[:6]:
        dr.import_batch(week, f"{start}.parquet", stage="archive")
    retrain_once(old, "first champion")
    champ = registry.champion(new.name)

    # the config drops the feature and the batches no longer carry it
    runs = [run_monitor(new, dr, start, week.drop(columns=[NEW])) for start, week in bikeshare_weeks[6:9]]

    assert not list(
        dr.quarantine.glob("*.parquet")
    )  # the batches are fine: nothing is lost, all three are archived
    assert len(dr.archived()) == 9
    first = runs[0]
    assert first["scored"]["predictions"] is None
    assert f"champion v{champ.version} cannot score" in first["scored"]["unscorable"]
    assert NEW in first["scored"]["unscorable"]
    assert first["decision"]["retrain"] and first["decision"]["fired"] == ["champion_unscorable"]
    assert first["decision"]["reasons"] == [first["scored"]["unscorable"]]

    replaced = retrain_once(new, "feature removed", force=force)

    ev = replaced["evaluation"]
    assert ev["passed"], ev["failed_checks"]
    assert ev["champion_version"] == champ.version and ev["champion"] == {}
    assert NEW in ev["champion_unscorable"] and "cannot score" in ev["champion_unscorable"]
    assert replaced["promoted"]["promoted"]
    now = registry.champion(new.name)
    assert now.version != champ.version
    assert NEW not in model_config(new, now.run_id).data.feature_names
    after = run_monitor(new, dr, bikeshare_weeks[9][0], bikeshare_weeks[9][1].drop(columns=[NEW]))
    assert after["scored"]["predictions"] is not None and after["perf"]["value"] is not None


def test_a_champion_no_longer_configured_feature_still_scores_while_batches_carry_it(
    state, bikeshare_cfg, bikeshare_weeks
):
    """Removed from the config but still exported: the champion scores on it until the next retrain."""
    old, new = bikeshare_cfg, without(bikeshare_cfg)
    dr = DataRoot(settings.data_root(), new.name).ensure()
    for start, week in bikeshare_weeks[:6]:
        dr.import_batch(week, f"{start}.parquet", stage="archive")
    retrain_once(old, "first champion")

    r = run_monitor(new, dr, *bikeshare_weeks[6])

    assert r["scored"]["predictions"] is not None and r["perf"]["value"] is not None
    assert NEW not in r["validation"]["extra_columns"]  # the champion reads it: not an ignored column
    assert not list(dr.quarantine.glob("*.parquet"))
