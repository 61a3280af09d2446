"""Rendering of the Retraining view: Jinja2 templates (``plugins/templates/``) with autoescaping, so a
stored string can only ever reach the page as text. No Airflow or FastAPI imports: tests render pages
with it directly; ``retrainer_plugin`` serves them after checking who asks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

PREFIX = "/retrainer"
TEMPLATES = Path(__file__).resolve().parent / "templates"


# -- helpers --------------------------------------------------------------------------------------
# a long float standing on its own in free text (``34.01840569434635``, ``+18.23456%``, ``1.234567e-05``), never
# digits inside a word or a time: the seconds of a run id (``05:51:13.243611``), a hash, a dotted version
_LONG_FLOAT = re.compile(r"(?<![\w:.])\d+\.\d{4,}(?:[eE][-+]?\d+)?(?![\w:]|\.\d)")


def readable(v: Any) -> str:
    """Free text with long floats shortened for reading (``34.01840569434635`` -> ``34.02``)."""
    text = "" if v is None else str(v)
    return _LONG_FLOAT.sub(lambda m: f"{float(m.group()):.4g}", text)


def num(v: Any, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def when(iso: str | None) -> str:
    return "–" if not iso else iso.replace("T", " ").replace("+00:00", " UTC")


def mlflow_url(exp: str | None, run: str | None) -> str | None:
    base = os.environ.get("RETRAINER_MLFLOW_UI_URL")
    if not (base and exp and run) or not base.startswith(("http://", "https://")):
        return None
    return f"{base}/#/experiments/{quote(str(exp))}/runs/{quote(str(run))}"


def dagrun_url(dag_id: str, run_id: str | None) -> str | None:
    return f"/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}" if run_id else None


def file_url(rel: str | None) -> str | None:
    return f"{PREFIX}/files/{quote(rel)}" if rel else None


VERDICT = {
    "retrain": ("retrain requested", "bad"),
    "suppressed": ("suppressed", "warn"),
    "no_retrain": ("ok", "good"),
    "quarantined": ("quarantined", "bad"),
}
OUTCOME = {"validated": "good", "rejected": "warn", "pending": "muted", "failed": "bad"}
LEVEL = {"high": "bad", "moderate": "warn", "low": "good", "unknown": "muted"}


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every {{ value }} is escaped; nothing is marked safe
        undefined=jinja2.ChainableUndefined,  # optional fields (e.g. stuck batches) may be absent
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(readable=readable, num=num, when=when, q=lambda v: quote(str(v), safe=""))
    env.globals.update(
        PREFIX=PREFIX,
        VERDICT=VERDICT,
        OUTCOME=OUTCOME,
        LEVEL=LEVEL,
        mlflow_url=mlflow_url,
        dagrun_url=dagrun_url,
        file_url=file_url,
    )
    return env


_ENV: Any = None


def render(template: str, **ctx: Any) -> str:
    global _ENV
    if _ENV is None:
        _ENV = _env()
    return str(_ENV.get_template(template).render(**ctx))


def chart_geometry(checks: list[dict[str, Any]], thresholds: dict[str, Any], metric: str) -> dict[str, Any]:
    """Numbers and labels for the inline SVG (drift on top, the metric below, with marks); the template
    draws it. Empty ``points`` means no batch was scored yet."""
    pts = [c for c in checks if c["verdict"] != "quarantined"]
    if not pts:
        return {"points": []}
    w, left, right, inset = 1000, 48, 16, 28  # inset: room for the first and last x labels
    top_h, bot_h, gap, pad = 170, 120, 44, 22
    n = len(pts)
    step = (w - left - right - 2 * inset) / max(n - 1, 1)

    def x(i: int) -> float:
        return left + inset + i * step if n > 1 else left + (w - left - right) / 2

    drift_vals = [v for c in pts for v in (c["data_drift_share"], c["prediction_drift"]) if v is not None]
    dmax = max([1.0, *drift_vals]) if drift_vals else 1.0
    y0, y1 = pad, pad + top_h

    def yd(v: float) -> float:
        return y1 - (v / dmax) * (y1 - y0)

    mvals = [c["metric"] for c in pts if c["metric"] is not None]
    b0 = y1 + gap
    b1 = b0 + bot_h
    mlo, mhi = (min(mvals), max(mvals)) if mvals else (0.0, 1.0)
    if mhi - mlo < 1e-9:
        mlo, mhi = mlo - 1, mhi + 1

    def ym(v: float) -> float:
        return b1 - (v - mlo) / (mhi - mlo) * (b1 - b0)

    grid = [(yd(v), f"{v:.2g}") for v in (0, dmax / 2, dmax)]
    grid += [(ym(v), f"{v:.3g}") for v in (mlo, (mlo + mhi) / 2, mhi)]
    lines = []
    for key, cls in (("data_drift_share", "t-drift"), ("prediction_drift", "t-pdrift")):
        t = thresholds.get(key)
        if t is not None and t <= dmax:
            lines.append({"y": yd(t), "cls": cls, "title": f"{key} threshold {t}"})
    retrains, suppressed, promotions = [], [], []
    prev = None
    for i, c in enumerate(pts):
        if c["verdict"] == "retrain":
            title = f"{c['batch']}: retrain requested: {readable('; '.join(c['reasons'] or []))}"
            retrains.append({"x": x(i), "title": title})
        elif c["verdict"] == "suppressed":
            suppressed.append({"x": x(i), "title": f"{c['batch']}: suppressed ({c['suppressed_by']})"})
        v = c["champion_version"]
        if prev is not None and v is not None and v != prev:
            promotions.append({"x": x(i) - step / 2, "title": f"champion v{prev} → v{v}", "label": f"v{v}"})
        prev = v if v is not None else prev

    series = []
    for key, cls, fy in (
        ("data_drift_share", "s-drift", yd),
        ("prediction_drift", "s-pdrift", yd),
        ("metric", "s-metric", ym),
    ):
        segs, pen, dots = [], "M", []
        for i, c in enumerate(pts):
            v = c[key]
            if v is None:
                pen = "M"
                continue
            segs.append(f"{pen}{x(i):.1f},{fy(v):.1f}")
            pen = "L"
            dots.append({"x": x(i), "y": fy(v), "title": f"{c['batch']}: {key} {v:.3g}"})
        series.append({"cls": cls, "d": " ".join(segs), "dots": dots})
    every = max(1, n // 8)
    labels = [
        {"x": x(i), "text": c["batch"].rsplit(".", 1)[0][:10]} for i, c in enumerate(pts) if i % every == 0
    ]
    return {
        "points": pts,
        "w": w,
        "left": left,
        "right": w - right,
        "y0": y0,
        "y1": y1,
        "b0": b0,
        "b1": b1,
        "grid": grid,
        "thresholds": lines,
        "retrains": retrains,
        "suppressed": suppressed,
        "promotions": promotions,
        "series": series,
        "labels": labels,
        "metric": metric,
    }


def overview_page(rows: list[dict[str, Any]]) -> str:
    """The overview page for these summary rows (those the user may read)."""
    return render("overview.html", title="Retraining", rows=rows)


def model_page(name: str, detail: dict[str, Any] | None = None) -> str:
    """A model's page (``detail`` from ``retrainer.overview.model_detail``, read here when not given)."""
    from retrainer import overview

    d = detail if detail is not None else overview.model_detail(name)
    chart = chart_geometry(d["checks"], d["thresholds"], d["summary"]["metric"])
    return render("model.html", title=f"Retraining: {name}", d=d, s=d["summary"], chart=chart)
