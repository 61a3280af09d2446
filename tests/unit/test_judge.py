"""Promotions judged by the batches after them, and the back-off when they keep losing (triggers.judge)."""

from __future__ import annotations

import itertools

import pytest

from retrainer.config import JudgeTrigger, PerformanceTrigger, TriggerConfig, load_config
from retrainer.policy import PolicyState, Signals, step

pytestmark = pytest.mark.unit

BASE = TriggerConfig(
    data_drift=None,
    prediction_drift=None,
    flags=None,
    estimation=None,
    performance=PerformanceTrigger(mode="relative", max_degradation=0.2, min_labelled_rows=10),
    cooldown_batches=1,
    max_age_batches=None,
)
JUDGED = BASE.model_copy(update={"judge": JudgeTrigger(batches=2, backoff_after=2)})


def bad(gap: float | None) -> Signals:
    """A batch on which the performance signal fires; ``gap``: the champion against the model it replaced."""
    return Signals(
        metric_name="mae", metric_value=2.0, metric_reference=1.0, labelled_rows=50, versus_replaced=gap
    )


def replay(t: TriggerConfig, gap: float, batches: int = 24) -> list[tuple[str, str | None]]:
    """Every batch fires; each retrain promotes a new model whose batches differ by ``gap`` from the one it
    replaced. Returns (verdict, suppressed_by) per batch."""
    state, model, promoted, out = PolicyState(), 0, False, []
    for _ in range(batches):
        d, state, _ = step(bad(gap if promoted else None), t, state, model_id=f"m{model}")
        out.append((d.verdict, d.suppressed_by))
        if d.retrain:
            model, promoted = model + 1, True
    return out


def test_losing_promotions_make_the_policy_back_off_with_a_recorded_reason():
    plain, judged = replay(BASE, +0.5), replay(JUDGED, +0.5)
    held = [why for _, why in judged if why and why.startswith("back-off")]

    assert sum(v == "retrain" for v, _ in judged) < sum(v == "retrain" for v, _ in plain) / 2
    assert held and "promotions lost to the models they replaced" in held[0]
    # the hold doubles with each further loss: the gaps between retrains grow
    at = [i for i, (v, _) in enumerate(judged) if v == "retrain"]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert gaps[-1] > gaps[1] >= 2


def test_winning_promotions_never_back_off():
    assert replay(JUDGED, -0.5) == replay(BASE, -0.5)


def test_a_win_ends_the_back_off():
    state, verdicts = PolicyState(), []
    for model, gaps in enumerate([(None, 0.5, 0.5), (None, 0.5, 0.5), (None, -0.5, -0.5)]):
        for g in gaps:
            _, state, _ = step(bad(g), JUDGED, state, model_id=f"m{model}")
        verdicts.append(state.losing_streak)
    assert verdicts == [1, 2, 0]


def test_rollback_when_configured_instead_of_a_retrain():
    t = JUDGED.model_copy(update={"judge": JudgeTrigger(batches=2, rollback=True)})
    state = PolicyState()
    _, state, _ = step(bad(None), t, state, model_id="m1")
    d1, state, _ = step(bad(0.5), t, state, model_id="m1")
    d2, state, _ = step(bad(0.5), t, state, model_id="m1")

    assert not d1.rollback and d2.rollback and not d2.retrain
    assert "rollback: the promotion of m1 lost to the model it replaced" in d2.reasons[-1]
    assert d2.details["promotion_lost"] == 1.0


def test_judge_state_survives_storage():
    state = PolicyState()
    for g in (None, 0.5):
        _, state, _ = step(bad(g), JUDGED, state, model_id="m1")
    back = PolicyState.from_dict(state.to_dict())
    assert back.judge_model == "m1" and back.judge_gaps == (0.5,) and back.losing_streak == 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_reversal_stream_promotions_are_judged_as_losing_and_the_policy_backs_off():
    """On the reversal stream every retrain learns last week's sign, so each promotion does worse than the
    model it replaced on the batches after it (the known answer): the judge must see that and back off."""
    from retrainer.backtest import Replay, run_policy, split_batches
    from retrainer.backtest.stats import _summary
    from retrainer.ml import datasets

    cfg = load_config("docs/backtest/configs/reversal.yaml")
    batches = split_batches(cfg, datasets.load("reversal"), "7D")
    replay = Replay(cfg, batches, 2, 0)
    replay.share_predictions = True
    judged_t = cfg.triggers.model_copy(update={"judge": JudgeTrigger()})
    plain = _summary(cfg, run_policy(replay, "trigger", "trigger", triggers=cfg.triggers), len(batches) - 2)
    judged = _summary(cfg, run_policy(replay, "judged", "trigger", triggers=judged_t), len(batches) - 2)

    assert judged["promotions_judged"] >= 3 and judged["promotions_lost"] == judged["promotions_judged"]
    assert judged["held_by_backoff"] > 0 and judged["retrains"] < plain["retrains"]
    assert plain.get("promotions_judged", 0) == 0  # off unless configured


def test_backtest_report_says_what_the_judge_did():
    from retrainer.backtest.report import judged_lines

    report = {
        "triggers": {"judged": {"judge": {"batches": 3}}, "plain": {"judge": None}},
        "policies": {
            "judged": {"promotions_judged": 4, "promotions_lost": 4, "rollbacks": 0, "held_by_backoff": 8},
            "plain": {},
        },
    }
    (line,) = judged_lines(report, "judged")
    assert "4, of which 4 lost" in line and "8 requests held by the back-off" in line
    assert judged_lines(report, "plain") == []
