"""The report as a picture: metric per batch with retrain marks, and the recovered-gain / retrain-share plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(report: dict[str, Any], out: Path | str) -> Path:
    """PNG: the metric per batch per policy with retrain marks, and the frontier with the triggers on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, fx) = plt.subplots(
        2, 1, figsize=(11, 7.5), gridspec_kw={"height_ratios": [3, 2]}, constrained_layout=True
    )
    drawn = _per_batch(ax, report)
    _plane(fx, report, drawn)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


COLORS = ["tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive"]


def _per_batch(ax: Any, report: dict[str, Any]) -> list[tuple[str, str]]:
    """The metric per batch per policy with retrain marks; the (colour, trigger policy) pairs drawn."""
    pol = report["policies"]
    triggers = ["trigger", *report["alternatives_vs_frontier"]]
    x = range(report["batches"])
    window = 8 if report["batches"] > 60 else 1  # long replays: a rolling mean keeps the lines readable

    def smooth(values: list[float]) -> list[float]:
        import pandas as pd

        return list(pd.Series(values).rolling(window, min_periods=1).mean()) if window > 1 else values

    mid = f"every_{min(4, max((s['k'] or 0) for s in pol.values()))}"
    styles = {"never": ("0.6", "--"), "every_batch": ("tab:blue", "-"), mid: ("tab:green", ":")}
    for name, (color, ls) in styles.items():
        if name in pol:
            ax.plot(
                x,
                smooth(pol[name]["per_batch"]),
                color=color,
                ls=ls,
                lw=1.2,
                label=f"{name} ({pol[name]['retrains']} retrains)",
            )
    drawn = list(zip(COLORS, triggers, strict=False))
    for c, name in reversed(drawn):  # the config's trigger policy last, on top
        s = pol[name]
        ys = smooth(s["per_batch"])
        ax.plot(
            x, ys, color=c, lw=1.8 if name == "trigger" else 1.0, label=f"{name} ({s['retrains']} retrains)"
        )
        rb = [i - report["warmup_batches"] for i in s["retrain_batches"]]
        ax.plot(rb, [ys[i] for i in rb], "v", color=c, ms=6 if name == "trigger" else 3)
    ax.set_ylabel(f"{report['metric']} per batch" + (f" (rolling mean of {window})" if window > 1 else ""))
    ax.set_xlabel(f"batch ({report['batch_freq']}); triangles mark retrains")
    ax.set_title(
        f"{report['model']}: prequential {report['metric']} ({'lower' if report['lower_is_better'] else 'higher'} is better)"
    )
    ax.legend(fontsize=8, ncol=2)
    return drawn


def _plane(fx: Any, report: dict[str, Any], drawn: list[tuple[str, str]]) -> None:
    """Recovered gain against retrain share: the fixed schedules, the trigger policies, the oracle bound."""
    pts = report["frontier"]
    share, rec = report["retrain_share"], report["recovered_gain"]
    fx.plot(
        [share[p["policy"]] for p in pts],
        [rec[p["policy"]] for p in pts],
        "o-",
        color="tab:blue",
        label="fixed schedules",
    )
    for p in pts:
        fx.annotate(
            p["policy"].replace("every_", "k="),
            (share[p["policy"]], rec[p["policy"]]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    for c, name in drawn:
        fx.plot([share[name]], [rec[name]], "*", ms=14, color=c, label=name)
    if "oracle" in report:  # the best any schedule reaches with each number of retrains, in hindsight
        o = report["oracle"]["whole"]
        n_eb = max(1, o["every_batch_retrains"])
        fx.plot(
            [m / n_eb for m in range(len(o["recovered_gain"]))],
            o["recovered_gain"],
            "-",
            color="0.45",
            lw=1.0,
            label="oracle bound (hindsight)",
        )
    th = report.get("thresholds", {"target_recovered": 0.95, "max_share": 0.25})
    fx.axhline(th["target_recovered"], color="0.7", lw=0.8, ls=":")
    fx.axvline(th["max_share"], color="0.7", lw=0.8, ls=":")
    fx.set_xlabel("retrains, share of every_batch's")
    fx.set_ylabel("recovered gain")
    fx.legend(fontsize=8)
