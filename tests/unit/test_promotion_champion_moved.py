"""``evaluate`` and ``promote`` are separate tasks: a champion that moves between them (a rollback) must not
be overridden by a candidate that was compared with another version."""

from __future__ import annotations

import pytest

from retrainer.stages import retrain
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking

pytestmark = pytest.mark.unit


def _versions(name: str, n: int) -> None:
    """``n`` registered versions on empty runs: alias moves need versions, not models."""
    c = tracking.client()
    exp = c.create_experiment(f"retrainer/{name}/bare")
    for i in range(n):
        run = c.create_run(exp)
        registry.register(name, run.info.run_id, f"bare-{i}", {})


def _evaluation(champion_version):
    return {"candidate": {"rmse": 1.0}, "champion": {"rmse": 2.0}, "champion_version": champion_version}


TRIGGER = {"source": "manual", "reasons": ["test"]}


def test_a_rollback_between_evaluate_and_promote_is_not_overridden(state, bikeshare_cfg):
    cfg, name = bikeshare_cfg, bikeshare_cfg.name  # promotion: immediate
    _versions(name, 3)
    registry.move_alias(name, registry.CHAMPION, 1, action="promote", reason="first", by="test")
    registry.move_alias(name, registry.CHAMPION, 2, action="promote", reason="second", by="test")
    evaluation = _evaluation(2)  # v3 was evaluated against v2 ...
    registry.move_alias(name, registry.CHAMPION, 1, action="rollback", reason="v2 misbehaved", by="test")

    out = retrain.promote(cfg, {"version": 3}, evaluation, TRIGGER)  # ... then v2 was rolled back

    assert registry.champion(name).version == 1
    assert registry.challenger(name).version == 3
    assert out["promoted"] is False and out["alias"] == registry.CHALLENGER
    assert "evaluated against champion v2" in out["refused"] and "now v1" in out["refused"]
    again = retrain.promote(cfg, {"version": 3}, evaluation, TRIGGER)  # the task's retry: same outcome
    assert again["refused"] == out["refused"] and again["event"] is None
    assert registry.champion(name).version == 1


def test_promote_moves_the_champion_it_was_evaluated_against(state, bikeshare_cfg):
    cfg, name = bikeshare_cfg, bikeshare_cfg.name
    _versions(name, 2)
    first = retrain.promote(cfg, {"version": 1}, _evaluation(None), TRIGGER)  # no champion yet
    second = retrain.promote(cfg, {"version": 2}, _evaluation(1), TRIGGER)

    assert first["promoted"] and second["promoted"] and "refused" not in second
    assert registry.champion(name).version == 2 and registry.challenger(name) is None
