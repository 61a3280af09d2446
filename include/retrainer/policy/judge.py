"""Promotions judged by what followed them: the new champion against the model it replaced, on the labelled
batches after the promotion (the same rows for both), and the back-off when promotions keep losing.

Pure functions over the policy state. The caller measures, per labelled batch the champion served, how much
worse it did than the model it replaced (:attr:`Signals.versus_replaced`, metric units, positive = worse);
:func:`judge` collects those numbers for the current champion and gives a :class:`Verdict` once
``judge.batches`` of them are in (or, cut short, when the champion is replaced before that). A loss adds one
to ``losing_streak``, a win resets it; from ``backoff_after`` losses in a row :func:`backoff_batches` says how
long retrain requests are held after the last one (doubling with each further loss).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrainer.config import TriggerConfig
    from retrainer.policy.state import PolicyState, Signals


@dataclass(frozen=True)
class Verdict:
    """One promotion judged: the champion, the batches it was judged on, its mean gap (positive = worse
    than the model it replaced), and whether it is still the champion (``current``)."""

    model: str
    batches: int
    mean_gap: float
    current: bool

    @property
    def lost(self) -> bool:
        return self.mean_gap > 0

    def describe(self, metric: str) -> str:
        word = "lost to" if self.lost else "beat"
        return (
            f"the promotion of {self.model} {word} the model it replaced on the {self.batches} labelled "
            f"batch(es) after it ({metric} {self.mean_gap:+.4g} per batch)"
        )


def judge(
    state: PolicyState, signals: Signals, t: TriggerConfig, model_id: str | None
) -> tuple[PolicyState, Verdict | None]:
    """This batch's gap added to the current champion's record; the verdict when one is due."""
    j = t.judge
    if j is None or model_id is None:
        return state, None
    verdict = None
    gaps = state.judge_gaps
    if state.judge_model != model_id:  # a new champion: an unfinished record is judged on what it has
        if state.judge_model is not None and 0 < len(gaps) < j.batches:
            verdict = Verdict(state.judge_model, len(gaps), sum(gaps) / len(gaps), current=False)
        gaps = ()
    if signals.versus_replaced is not None and len(gaps) < j.batches:
        gaps = (*gaps, float(signals.versus_replaced))
        if len(gaps) == j.batches:
            verdict = Verdict(model_id, len(gaps), sum(gaps) / len(gaps), current=True)
    streak = state.losing_streak
    if verdict is not None:
        streak = streak + 1 if verdict.lost else 0
    return replace(state, judge_model=model_id, judge_gaps=gaps, losing_streak=streak), verdict


def backoff_batches(state: PolicyState, t: TriggerConfig) -> int:
    """Batches after the last request during which requests are held (0 = no back-off)."""
    j = t.judge
    if j is None or state.losing_streak < j.backoff_after:
        return 0
    span = max(t.cooldown_batches, j.batches, 1) * 2 ** (state.losing_streak - j.backoff_after + 1)
    return int(min(j.max_backoff_batches, span))
