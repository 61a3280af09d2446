"""Pre-deployment model checks beyond the headline metric: per-slice and behavioural.

Run by :func:`retrainer.stages.retrain.evaluate` on the same held-out data as the champion comparison. Each check
returns a :class:`CheckResult`; a failed one names itself and its evidence, and that text goes into the
rejection record on the training run (tag ``retrainer.validation``).

- ``slice <column>=<value>``: the primary metric on every value of a configured column must not be worse
  than the champion's on the same rows by more than ``max_degradation`` (relative).
- ``invariance``: small noise on features that should barely matter must barely move the predictions.
- ``prediction_range``: every prediction finite and inside a sane range.
- ``min_functionality``: a model that predicts one value for every row (while the truth varies) fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from retrainer.ml import metrics
from retrainer.ml.train import predict

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import ModelConfig


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slice_checks(
    cfg: ModelConfig,
    candidate: Any,
    champion: Any | None,
    holdout: pd.DataFrame,
    champion_cfg: ModelConfig | None = None,
) -> list[CheckResult]:
    """Candidate vs champion on each value of each configured slice column (the champion scored with
    ``champion_cfg``, its own feature list, when given)."""

    if champion is None or not cfg.validation.slices:
        return []
    out: list[CheckResult] = []
    for spec in cfg.validation.slices:
        values = holdout[spec.column].astype("string").fillna("<null>")
        for value in sorted(values.unique()):
            mask = (values == value).to_numpy()
            name = f"slice {spec.column}={value}"
            if mask.sum() < spec.min_rows:
                continue  # too few rows to judge: the noise would decide
            c = metrics.score(cfg, candidate, holdout[mask]).get(cfg.metric, float("nan"))
            b = metrics.score(champion_cfg or cfg, champion, holdout[mask]).get(cfg.metric, float("nan"))
            worse = metrics.worse_by(c, b, cfg.lower_is_better)
            passed = worse <= spec.max_degradation
            out.append(
                CheckResult(
                    name,
                    passed,
                    f"{name} ({int(mask.sum())} rows): {cfg.metric} {c:.4g} vs champion {b:.4g} "
                    f"({worse:+.0%} {'<=' if passed else '>'} {spec.max_degradation:.0%} allowed)",
                )
            )
    return out


def invariance_check(
    cfg: ModelConfig, model: Any, holdout: pd.DataFrame, train: pd.DataFrame
) -> CheckResult | None:
    """Seeded noise (``noise`` std of each feature) on the listed features; predictions must barely move."""
    import numpy as np

    spec = cfg.validation.behaviour.invariance
    if spec is None:
        return None
    rng = np.random.default_rng(0)
    perturbed = holdout.copy()
    for f in spec.features:
        if f in cfg.data.categorical:  # a categorical cannot be nudged: shuffle it across rows instead
            perturbed[f] = rng.permutation(perturbed[f].to_numpy())
        else:
            scale = float(train[f].std()) or 1.0
            perturbed[f] = perturbed[f] + rng.normal(0.0, spec.noise * scale, len(perturbed))
    base, moved = predict(cfg, model, holdout), predict(cfg, model, perturbed)
    if cfg.task == "regression":
        spread = float(np.std(base)) or 1.0
        change = float(np.mean(np.abs(moved - base))) / spread
        what = "mean |change| / prediction std"
    else:
        change = float(np.mean(moved != base))
        what = "share of changed labels"
    passed = change <= spec.tolerance
    return CheckResult(
        "invariance",
        passed,
        f"invariance to noise ({spec.noise} std) on {', '.join(spec.features)}: {what} {change:.3f} "
        f"{'<=' if passed else '>'} {spec.tolerance}",
    )


def range_check(cfg: ModelConfig, preds: Any, train: pd.DataFrame) -> CheckResult | None:
    """Every prediction finite and, for regression, inside [min, max]."""
    import numpy as np

    spec = cfg.validation.behaviour.prediction_range
    if spec is None:
        return None
    if cfg.task == "classification":
        known = set(train[cfg.data.target].unique())
        unknown = sorted({str(p) for p in preds if p not in known})
        return CheckResult(
            "prediction_range",
            not unknown,
            f"prediction_range: labels never seen in training: {unknown}"
            if unknown
            else "prediction_range: every predicted label was seen in training",
        )
    y = train[cfg.data.target].astype(float)
    width = float(y.max() - y.min())
    lo = spec.min if spec.min is not None else float(y.min()) - spec.slack * width
    hi = spec.max if spec.max is not None else float(y.max()) + spec.slack * width
    p = np.asarray(preds, dtype=float)
    bad = ~np.isfinite(p) | (p < lo) | (p > hi)
    n = int(bad.sum())
    detail = f"prediction_range: {n} of {len(p)} predictions outside [{lo:.4g}, {hi:.4g}] or not finite"
    if n:
        detail += f" (min {np.nanmin(p):.4g}, max {np.nanmax(p):.4g})"
    return CheckResult("prediction_range", n == 0, detail)


def functionality_check(cfg: ModelConfig, preds: Any, holdout: pd.DataFrame) -> CheckResult | None:
    """Minimum functionality: the predictions must vary when the truth does."""
    import numpy as np

    if not cfg.validation.behaviour.min_prediction_spread or len(holdout) < 2:
        return None
    truth_varies = holdout[cfg.data.target].nunique() > 1
    distinct = len(np.unique(np.asarray(preds)))
    passed = distinct > 1 or not truth_varies
    return CheckResult(
        "min_functionality",
        passed,
        f"min_functionality: {distinct} distinct prediction(s) on {len(holdout)} holdout rows"
        + ("" if passed else f" (always {np.asarray(preds)[0]!r}) while the truth varies"),
    )


def run_checks(
    cfg: ModelConfig,
    candidate: Any,
    champion: Any | None,
    holdout: pd.DataFrame,
    train: pd.DataFrame,
    champion_cfg: ModelConfig | None = None,
) -> list[CheckResult]:
    """All configured slice and behavioural checks of ``candidate`` (champion needed for slices, scored
    with ``champion_cfg`` when given)."""

    preds = predict(cfg, candidate, holdout)
    results = slice_checks(cfg, candidate, champion, holdout, champion_cfg)
    for r in (
        invariance_check(cfg, candidate, holdout, train),
        range_check(cfg, preds, train),
        functionality_check(cfg, preds, holdout),
    ):
        if r is not None:
            results.append(r)
    return results
