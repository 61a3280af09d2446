"""The report as text: the table printed by ``retrainer backtest``."""

from __future__ import annotations

from typing import Any


def format_table(report: dict[str, Any]) -> str:
    """The human-readable report printed on stdout."""
    m = report["metric"]
    extra = [k for k in next(iter(report["policies"].values()))["metrics"] if k != m]
    widths = {x: max(10, len(x) + 2) for x in extra}
    nw = max(18, *(len(n) + 2 for n in report["policies"]), len(report["baseline"]["policy"]) + 2)
    head = f"{'policy':<{nw}}{'mean ' + m:>12}{'worst':>10}" + "".join(f"{x:>{widths[x]}}" for x in extra)
    head += f"{'retrains':>10}{'share':>7}{'recovered':>10}{'promoted':>10}{'rows trained':>14}{'seconds':>9}"
    lines = [
        f"backtest of {report['model']} on {report['data']}: {report['batches']} batches of {report['batch_freq']} "
        f"({report['rows']} rows) after {report['warmup_batches']} warm-up batches; label delay "
        f"{report['label_delay_batches']} batch(es); {m} is {'lower' if report['lower_is_better'] else 'higher'}"
        " = better",
        head,
        "-" * len(head),
    ]

    def row(name: str, s: dict[str, Any]) -> str:
        cells = f"{name:<{nw}}{s['mean']:>12.4f}{s['worst']:>10.4f}" + "".join(
            f"{s['metrics'].get(x, float('nan')):>{widths[x]}.4f}" for x in extra
        )
        share = report["retrain_share"].get(name)
        rec = report["recovered_gain"].get(name)
        cells += f"{s['retrains']:>10}" + (f"{share:>7.0%}" if share is not None else f"{'':>7}")
        cells += f"{rec:>10.1%}" if rec is not None else f"{'':>10}"
        return cells + f"{s['promoted']:>10}{s['rows_trained']:>14}{s['seconds']:>9.2f}"

    for name, s in report["policies"].items():
        lines.append(row(name, s))
    b = report["baseline"]
    lines.append(row(b["policy"], b) + "   (no model)")
    lines.append(
        "share: retrains as a share of every_batch's; recovered: (policy - never) / (every_batch - never)"
    )
    for tv in [report["trigger_vs_frontier"], *report["alternatives_vs_frontier"].values()]:
        lines += ["", *comparison_lines(report, tv)]
    h = report.get("halves")
    if h:
        names = ["trigger", *report["alternatives_vs_frontier"]]
        lines += [
            "",
            "by half of the replay (recovered gain / retrain share; the oracle bound at the same retrains):",
        ]
        lines.append(f"  {'policy':<18}" + "".join(f"{label + ' half':>22}" for label in h))
        for name in names:
            cells = "".join(
                f"{h[label]['policies'][name]['recovered_gain']:>13.1%} / "
                f"{h[label]['policies'][name]['retrain_share']:>4.0%}"
                + (
                    f" ({h[label]['policies'][name]['oracle_recovered_gain']:.0%})"
                    if "oracle_recovered_gain" in h[label]["policies"][name]
                    else ""
                )
                for label in h
            )
            lines.append(f"  {name:<18}{cells}")
    return "\n".join(lines)


def comparison_lines(report: dict[str, Any], tv: dict[str, Any]) -> list[str]:
    """One trigger policy against retrain-every-batch, the fixed-schedule frontier and the oracle bound."""
    m = report["metric"]
    g = tv["criteria"]
    rel = tv["relative_gap_to_every_batch"]
    worse = rel > 0 if report["lower_is_better"] else rel < 0
    closeness = (
        f"within {abs(rel):.1%} of retrain-every-batch"
        if worse
        else f"{abs(rel):.1%} better than retrain-every-batch"
    )
    eb_retrains = report["policies"]["every_batch"]["retrains"]
    lo, hi = tv["ci95"]
    place = "above" if g["above_frontier"] else "below"
    sure = "the CI excludes 0" if (lo > 0 or hi < 0) else "the CI includes 0"
    out = [
        f"{tv['policy']}: {closeness} ({m} {tv['mean']:.4f} vs {tv['every_batch_mean']:.4f}) with "
        f"{tv['retrain_share']:.0%} of its retrains ({tv['retrains']} of {eb_retrains}); recovered "
        f"{tv['recovered_gain']:.1%} of its gain over never retraining{_ci(tv)}",
        f"  {place} the fixed-schedule frontier at the same retrains ({' / '.join(tv['frontier_between'])}: "
        f"{m} {tv['frontier_mean']:.4f}; difference {tv['difference']:+.4f}, 95% CI {lo:+.4f} .. {hi:+.4f}, "
        f"paired bootstrap over batches; {tv['better_is']} is better): {sure}",
    ]
    if "oracle_recovered_gain" in tv:
        out.append(
            f"  oracle bound: the best schedule with {tv['retrains']} retrains, chosen in hindsight, "
            f"recovers {tv['oracle_recovered_gain']:.1%}"
        )
    out.append(
        f"  recovered >= {g['recovered_at_least']:.0%} (--target-recovered): {'yes' if g['recovered'] else 'no'}; "
        f"retrain share <= {g['retrain_share_at_most']:.0%} (--max-share): {'yes' if g['share'] else 'no'}"
    )
    out += always_firing(report, tv["policy"])
    out += judged_lines(report, tv["policy"])
    return out


def judged_lines(report: dict[str, Any], name: str) -> list[str]:
    """What judging the promotions by the batches after them did (``triggers.judge``)."""
    p = report["policies"][name]
    if not (report.get("triggers", {}).get(name) or {}).get("judge"):
        return []
    judged, lost = p.get("promotions_judged", 0), p.get("promotions_lost", 0)
    return [
        f"  promotions judged by the batches after them, against the models they replaced: {judged}, of "
        f"which {lost} lost; {p.get('rollbacks', 0)} rolled back; {p.get('held_by_backoff', 0)} requests "
        "held by the back-off after losing promotions"
    ]


ALWAYS = 0.8  # a signal firing on this share of the batches times nothing: the cooldown or budget does
ADVICE = {
    "prediction_drift": "`prediction_drift: {mode: auto}` (the default) or `{mode: control}` judges the "
    "distance against the stream's own batch-to-batch noise instead of a fixed threshold",
    "data_drift": "raise `data_drift.share` / `column_threshold`, or set `data_drift: null`",
    "performance": "`performance: {mode: control}` (or a larger `z`) judges the metric against the "
    "stream's own noise",
}


def always_firing(report: dict[str, Any], name: str) -> list[str]:
    """A hint for each signal of a trigger policy that fired on nearly every batch, and for a performance
    signal that could judge few batches (too few labelled rows)."""
    policy = report["policies"][name]
    fired = policy.get("fired") or {}
    n = report["batches"]
    perf = (report.get("triggers", {}).get(name) or {}).get("performance")
    judged = policy.get("performance_judged")
    rarely = []
    if perf and judged is not None and n and judged < 0.5 * n:
        rarely.append(
            f"  performance judged {judged} of {n} batches: the others had fewer labelled rows than "
            f"performance.min_labelled_rows ({perf['min_labelled_rows']}) or no labels yet; lower it to "
            "the rows a batch holds"
        )
    return rarely + [
        f"  {signal} fired on {count} of {n} batches: it does not time the retrains, the cooldown or budget "
        f"does (a fixed schedule in effect); {ADVICE[signal]}"
        for signal, count in fired.items()
        if signal in ADVICE and n and count / n >= ALWAYS
    ]


def _ci(tv: dict[str, Any]) -> str:
    """The recovered gain's 95% CI as the report line's suffix ("" when the report has none)."""
    lo, hi = tv.get("recovered_gain_ci95") or (float("nan"), float("nan"))
    if lo != lo or hi != hi:  # NaN: not known (an older report, or no gain to recover)
        return ""
    return f" (95% CI {lo:.1%} .. {hi:.1%}, resampling batches)"
