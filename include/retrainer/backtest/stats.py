"""Comparison statistics: summaries, the fixed-schedule frontier, recovered gain, halves, the oracle bound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from retrainer.backtest.replay import PolicyRun
    from retrainer.config import ModelConfig

BOOTSTRAP = 2000


# -- summaries --------------------------------------------------------------------------------------------
def _summary(cfg: ModelConfig, run: PolicyRun, n_batches: int) -> dict[str, Any]:
    import numpy as np

    vals = np.array(run.per_batch, dtype=float)
    names = sorted({k for s in run.per_batch_all for k in s})
    means = {m: float(np.nanmean([s.get(m, np.nan) for s in run.per_batch_all])) for m in names}
    worst = float(np.nanmax(vals) if cfg.lower_is_better else np.nanmin(vals))
    return {
        "mean": float(np.nanmean(vals)),
        "worst": worst,
        "retrains": len(run.retrain_batches),
        "promoted": len(run.promoted_batches),
        "rejected": len(run.rejected),
        "rows_trained": int(run.rows_trained),
        "seconds": round(run.seconds, 3),
        "metrics": means,
        "kind": run.kind,
        "k": run.k,
        "retrain_batches": run.retrain_batches,
        "per_batch": [float(v) for v in vals],
        **(
            {
                "fired": run.fired,
                "suppressed": run.suppressed,
                # batches whose labelled rows were enough for the performance signal to judge them
                "performance_judged": sum("metric_value" in d for d in run.decisions),
                # promotions judged by the batches after them (triggers.judge), and what came of it
                "promotions_judged": len(run.judged),
                "promotions_lost": sum(j["lost"] for j in run.judged),
                "rollbacks": len(run.rollback_batches),
                "rollback_batches": run.rollback_batches,
                "held_by_backoff": run.backed_off,
            }
            if run.kind == "trigger"
            else {}
        ),
        **({"rejections": run.rejected[:50]} if run.rejected else {}),
    }


def frontier_points(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixed-schedule frontier: never, every_K ... every_batch, by number of retrains."""
    pts = [
        {"policy": n, "retrains": s["retrains"], "mean": s["mean"]}
        for n, s in summaries.items()
        if s["kind"] in {"never", "schedule"}
    ]
    return sorted(pts, key=lambda p: (p["retrains"], p["policy"]))


def _interpolate(summaries: dict[str, dict[str, Any]], retrains: int) -> tuple[np.ndarray, float, list[str]]:
    """Per-batch frontier metric at ``retrains`` (linear between the neighbouring schedules)."""
    import numpy as np

    pts = frontier_points(summaries)
    series = {p["policy"]: np.array(summaries[p["policy"]]["per_batch"]) for p in pts}
    lower = [p for p in pts if p["retrains"] <= retrains]
    upper = [p for p in pts if p["retrains"] >= retrains]
    a = lower[-1] if lower else pts[0]
    b = upper[0] if upper else pts[-1]
    if a["retrains"] == b["retrains"]:
        return series[a["policy"]], float(np.nanmean(series[a["policy"]])), [a["policy"]]
    w = (retrains - a["retrains"]) / (b["retrains"] - a["retrains"])
    s = (1 - w) * series[a["policy"]] + w * series[b["policy"]]
    return s, float(np.nanmean(s)), [a["policy"], b["policy"]]


# the default comparison thresholds (``retrainer backtest --target-recovered / --max-share``): a policy
# "keeps up" when it recovers this share of every_batch's gain over never ...
DEFAULT_TARGET_RECOVERED = 0.95
DEFAULT_MAX_SHARE = 0.25  # ... with at most this share of every_batch's retrains


def recovered_gain(cfg: ModelConfig, summaries: dict[str, dict[str, Any]], name: str) -> float:
    """(policy - never) / (every_batch - never) on the mean metric: 1 = every_batch's quality, 0 = never's."""
    never, eb = summaries["never"]["mean"], summaries["every_batch"]["mean"]
    if eb == never:
        return float("nan")
    return (summaries[name]["mean"] - never) / (eb - never)


def _resampled(n: int) -> np.ndarray:
    """``BOOTSTRAP`` resamples of ``n`` batch indices (seeded: the same report gives the same CIs)."""
    import numpy as np

    return np.random.default_rng(0).integers(0, n, size=(BOOTSTRAP, n))


def _ci95(boots: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of bootstrap statistics; NaN when there are none."""
    import numpy as np

    if not len(boots):
        return float("nan"), float("nan")
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(lo), float(hi)


def recovered_gain_ci(summaries: dict[str, dict[str, Any]], name: str) -> tuple[float, float]:
    """95% CI of a policy's recovered gain, resampling batches (paired: the same batches for the policy,
    never and every_batch; ``BOOTSTRAP`` resamples, seeded). How much the replay's batches pin the number
    down: on a short replay a few batches carry most of the gain. NaN when it is undefined."""
    import numpy as np

    pol = np.array(summaries[name]["per_batch"], dtype=float)
    never = np.array(summaries["never"]["per_batch"], dtype=float)
    eb = np.array(summaries["every_batch"]["per_batch"], dtype=float)
    ok = ~(np.isnan(pol) | np.isnan(never) | np.isnan(eb))
    gained, possible = (pol - never)[ok], (eb - never)[ok]
    if not len(gained):
        return float("nan"), float("nan")
    idx = _resampled(len(gained))
    den = possible[idx].sum(axis=1)
    return _ci95(gained[idx].sum(axis=1)[den != 0] / den[den != 0])


def paired_bootstrap_ci(d: np.ndarray) -> tuple[float, float]:
    """95% CI of the mean of paired per-batch differences (``BOOTSTRAP`` resamples, seeded; NaN if empty)."""
    import numpy as np

    return _ci95(d[_resampled(len(d))].mean(axis=1) if len(d) else np.array([np.nan]))


def versus_frontier(
    cfg: ModelConfig,
    summaries: dict[str, dict[str, Any]],
    name: str,
    target_recovered: float = DEFAULT_TARGET_RECOVERED,
    max_share: float = DEFAULT_MAX_SHARE,
) -> dict[str, Any]:
    """A policy against the schedule frontier at its number of retrains, and against every_batch.

    ``criteria`` holds the checks against the comparison thresholds: recovered gain at least
    ``target_recovered``, retrain share at most ``max_share``, better than the frontier with the CI
    excluding 0.
    """
    import numpy as np

    s = summaries[name]
    mine = np.array(s["per_batch"])
    frontier, frontier_mean, between = _interpolate(summaries, s["retrains"])
    diff = mine - frontier  # per batch, in metric units
    d = diff[~np.isnan(diff)]
    lo, hi = paired_bootstrap_ci(d)
    sign = -1.0 if cfg.lower_is_better else 1.0  # "advantage" > 0 means better than the frontier
    eb = summaries["every_batch"]
    gap = s["mean"] - eb["mean"]
    rel = gap / abs(eb["mean"]) if eb["mean"] else float("nan")
    fraction = s["retrains"] / eb["retrains"] if eb["retrains"] else float("nan")
    advantage = sign * float(np.mean(d)) if len(d) else float("nan")
    recovered = recovered_gain(cfg, summaries, name)
    ci_better = bool((hi < 0) if cfg.lower_is_better else (lo > 0))
    return {
        "policy": name,
        "retrains": s["retrains"],
        "mean": s["mean"],
        "frontier_mean": frontier_mean,
        "frontier_between": between,
        "difference": float(np.mean(d)) if len(d) else float("nan"),
        "ci95": [lo, hi],
        "advantage": advantage,
        "better_is": "lower" if cfg.lower_is_better else "higher",
        "every_batch_mean": eb["mean"],
        "gap_to_every_batch": gap,
        "relative_gap_to_every_batch": rel,
        "retrain_fraction": fraction,
        "retrain_share": fraction,
        "recovered_gain": recovered,
        "recovered_gain_ci95": list(recovered_gain_ci(summaries, name)),
        "criteria": {
            "recovered_at_least": target_recovered,
            "retrain_share_at_most": max_share,
            "recovered": bool(recovered >= target_recovered),
            "share": bool(fraction <= max_share),
            "above_frontier": bool(advantage > 0),
            "above_frontier_ci_excludes_0": ci_better,
            "all": bool(recovered >= target_recovered and fraction <= max_share and ci_better),
        },
    }


def slice_summaries(
    summaries: dict[str, dict[str, Any]], lo: int, hi: int, warmup: int
) -> dict[str, dict[str, Any]]:
    """The summaries restricted to evaluation batches ``lo <= index < hi`` (means and retrains recounted)."""
    import numpy as np

    out = {}
    for name, s in summaries.items():
        per = s["per_batch"][lo:hi]
        retr = [i for i in s["retrain_batches"] if lo <= i - warmup < hi]
        out[name] = {
            **s,
            "per_batch": per,
            "mean": float(np.nanmean(per)) if per else float("nan"),
            "retrains": len(retr),
            "retrain_batches": retr,
        }
    return out


def halves(
    cfg: ModelConfig,
    summaries: dict[str, dict[str, Any]],
    warmup: int,
    target_recovered: float = DEFAULT_TARGET_RECOVERED,
    max_share: float = DEFAULT_MAX_SHARE,
) -> dict[str, Any]:
    """Every policy on the first and on the second half of the evaluation batches, separately.

    Tuning chooses on the first half of each stream; the second half is reported as held out.
    """
    n = len(summaries["never"]["per_batch"])
    mid = n // 2
    out: dict[str, Any] = {}
    for label, (lo, hi) in {"first": (0, mid), "second": (mid, n)}.items():
        part = slice_summaries(summaries, lo, hi, warmup)
        rows = {
            name: versus_frontier(cfg, part, name, target_recovered, max_share)
            for name, s in part.items()
            if s["kind"] == "trigger"
        }
        out[label] = {
            "batches": [lo, hi],
            "every_batch_retrains": part["every_batch"]["retrains"],
            "never_mean": part["never"]["mean"],
            "every_batch_mean": part["every_batch"]["mean"],
            "policies": {
                name: {
                    "mean": p["mean"],
                    "retrains": p["retrains"],
                    "recovered_gain": recovered_gain(cfg, part, name),
                    "retrain_share": p["retrains"] / part["every_batch"]["retrains"]
                    if part["every_batch"]["retrains"]
                    else float("nan"),
                }
                for name, p in part.items()
            },
            "vs_frontier": rows,
        }
    return out


# -- the oracle bound ----------------------------------------------------------------------------------
def oracle_curve(
    values: np.ndarray, lower_is_better: bool, lo: int = 0, hi: int | None = None
) -> list[float]:
    """The best mean metric on batches ``lo <= e < hi`` reachable with exactly/at most m retrains.

    ``values`` is :func:`model_metrics`' matrix. A schedule is a set of retrain batches in ``[lo, hi)``
    (a retrain at ``r`` serves from ``r + 1``); whatever served batch ``lo`` may be any model trained
    before it (for ``lo = 0``: the first model). Every retrain is assumed to be promoted, so this bounds
    every policy with at most m retrains from above, whatever its validation rejected. Dynamic
    programming over (retrains, last retrain batch), O(m n^2). Returns the best mean for m = 0 .. hi - lo.
    """
    import numpy as np

    n = values.shape[1]
    hi = n if hi is None else hi
    sign = -1.0 if lower_is_better else 1.0
    v = sign * np.nan_to_num(values[:, lo:hi], nan=0.0)  # rows: models; cols: batches of the slice
    valid = ~np.isnan(values[:, lo:hi])
    batches = max(1, int(np.max(np.sum(valid, axis=1)))) if valid.any() else 1
    L = hi - lo
    cum = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(v, axis=1)], axis=1)  # sum of cols < j
    neg = -np.inf
    # start: the best model able to serve batch lo (rows 0..lo) for a segment lo..lo+j-1
    starts = [r for r in range(lo + 1) if not np.isnan(values[r, lo])] or [0]
    # g[r] (r = slice position of the last retrain) = best total over slice cols <= r
    seg0 = np.max(cum[starts, :], axis=0)  # seg0[j] = best start model's total over cols < j
    best = [seg0[L]]
    # one retrain at position r: start model over cols 0..r, then model row lo+r+1 over cols r+1..
    g = seg0[1 : L + 1].copy()  # total over cols 0..r, for r = 0..L-1
    ok_rows = np.array([lo + r + 1 < n and not np.isnan(values[lo + r + 1, lo + r + 1]) for r in range(L)])
    rows = np.minimum(np.arange(L) + lo + 1, values.shape[0] - 1)
    for _m in range(1, L + 1):
        # finish: the model of the last retrain at r serves cols r+1 .. L-1
        tail = np.where(ok_rows, cum[rows, L] - cum[rows, np.arange(L) + 1], neg)
        tail = np.where(np.arange(L) == L - 1, 0.0, tail)  # a retrain on the last batch serves nothing
        best.append(max(best[-1], float(np.max(g + tail))))
        # next retrain at r' > r: model of r serves cols r+1 .. r'
        cr = cum[rows]  # (L, L + 1)
        # trans[r, r'] = cum[row_r, r' + 1] - cum[row_r, r + 1] for r < r'
        trans = cr[:, 1:] - cr[np.arange(L), np.arange(L) + 1][:, None]
        mask = np.arange(L)[:, None] < np.arange(L)[None, :]
        trans = np.where(mask & ok_rows[:, None], trans, neg)
        g = np.max(g[:, None] + trans, axis=0)
        if not np.isfinite(g).any():
            best += [best[-1]] * (L - _m)
            break
    return [sign * b / batches for b in best]


def oracle(cfg: ModelConfig, summaries: dict[str, dict[str, Any]], values: np.ndarray) -> dict[str, Any]:
    """The oracle bound on the whole replay and on each half, as mean metric and recovered gain by retrains."""
    n = values.shape[1]
    out: dict[str, Any] = {}
    for label, (lo, hi) in {"whole": (0, n), "first": (0, n // 2), "second": (n // 2, n)}.items():
        part = summaries if label == "whole" else slice_summaries(summaries, lo, hi, 0)
        means = oracle_curve(values, cfg.lower_is_better, lo, hi)
        never, eb = part["never"]["mean"], part["every_batch"]["mean"]
        rec = [(m - never) / (eb - never) if eb != never else float("nan") for m in means]
        n_eb = part["every_batch"]["retrains"] if label == "whole" else hi - lo
        out[label] = {"batches": [lo, hi], "mean": means, "recovered_gain": rec, "every_batch_retrains": n_eb}
    return out


def oracle_at(oracle_part: dict[str, Any], retrains: int) -> float:
    """The oracle's recovered gain with at most ``retrains`` retrains."""
    rec = oracle_part["recovered_gain"]
    return rec[max(0, min(retrains, len(rec) - 1))]
