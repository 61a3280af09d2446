"""Airflow 3 plugin: the *Retraining* view.

A FastAPI sub-app served by the Airflow API server under ``/retrainer`` plus a nav entry (``external_views``)
that shows it framed in the Airflow UI at ``/plugin/retraining``. Pages:

* ``/retrainer/``: one row per configured model: champion, last check and verdict, drift level, last
  retrain, challenger.
* ``/retrainer/models/<name>``: chart over batches (data drift share, prediction drift, performance) with
  retrain / promotion marks, the decision log with reasons (suppressed triggers included), retrains,
  versions and promotion history, links to Evidently HTML, GX Data Docs, MLflow runs and Airflow DAG runs.
* ``/retrainer/api/overview`` and ``/retrainer/api/models/<name>``: the same data as JSON.
* ``/retrainer/files/reports/...``: the report files under the data root.

Every route requires an authenticated Airflow user: the JWT from ``Authorization: Bearer`` or the UI's
``_token`` cookie is validated by Airflow's own auth manager. Without one, pages redirect to the login
page and the API and files answer 401; never data. All data comes from ``retrainer.overview``.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any, ClassVar
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

PREFIX = "/retrainer"


class _LoginRequired(Exception):
    def __init__(self, next_url: str):
        self.next_url = next_url


async def require_user(request: Request) -> Any:
    """The Airflow user behind the request's JWT (header or ``_token`` cookie); 401 / login redirect otherwise."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = token or request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    is_page = not request.url.path.startswith((f"{PREFIX}/api", f"{PREFIX}/files"))
    try:
        return await resolve_user_from_token(token)
    except HTTPException as exc:
        if is_page and request.method == "GET":
            raise _LoginRequired(str(request.url.path)) from exc
        raise HTTPException(status_code=401, detail=f"authentication required: {exc.detail}") from exc


app = FastAPI(title="Retrainer", dependencies=[Depends(require_user)])


@app.exception_handler(_LoginRequired)
async def _to_login(request: Request, exc: _LoginRequired) -> RedirectResponse:
    from airflow.api_fastapi.app import get_auth_manager

    login = get_auth_manager().get_url_login()  # the configured auth manager's own login page
    return RedirectResponse(f"{login}?next={quote(exc.next_url)}", status_code=303)


# -- data -------------------------------------------------------------------------------------------
@app.get("/api/overview")
def api_overview() -> JSONResponse:
    from retrainer import overview

    return JSONResponse(overview.overview())


@app.get("/api/models/{name}")
def api_model(name: str) -> JSONResponse:
    return JSONResponse(_detail(name))


@app.get("/files/{path:path}")
def files(path: str) -> FileResponse:
    from retrainer import overview

    try:
        return FileResponse(overview.data_file(path))
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail=f"no report file {path!r}") from None


def _detail(name: str) -> dict[str, Any]:
    from retrainer import overview
    from retrainer.exceptions import ConfigError

    try:
        return overview.model_detail(name)
    except ConfigError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


# -- pages ------------------------------------------------------------------------------------------
@app.get("/", response_class=HTMLResponse)
def page_overview() -> HTMLResponse:
    from retrainer import overview

    return HTMLResponse(_page("Retraining", _overview_body(overview.overview())))


@app.get("/models/{name}", response_class=HTMLResponse)
def page_model(name: str) -> HTMLResponse:
    d = _detail(name)
    return HTMLResponse(_page(f"Retraining: {name}", _model_body(d)))


_LONG_FLOAT = re.compile(r"\d+\.\d{4,}")


def _e(v: Any) -> str:
    """Escaped text; long floats inside reasons (``34.01840569434635``) shortened for reading."""
    text = "" if v is None else str(v)
    return html.escape(_LONG_FLOAT.sub(lambda m: f"{float(m.group()):.4g}", text))


def _num(v: Any, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def _when(iso: str | None) -> str:
    return "–" if not iso else _e(iso.replace("T", " ").replace("+00:00", " UTC"))


def _mlflow(exp: str | None, run: str | None, label: str = "MLflow") -> str:
    base = os.environ.get("RETRAINER_MLFLOW_UI_URL")
    if not (base and exp and run):
        return f'<span class="muted" title="MLflow run {_e(run)}">{_e(label)}</span>' if run else ""
    return f'<a href="{_e(base)}/#/experiments/{_e(exp)}/runs/{_e(run)}" target="_blank">{_e(label)}</a>'


def _dagrun(dag_id: str, run_id: str | None) -> str:
    if not run_id:
        return ""
    return f'<a href="/dags/{quote(dag_id)}/runs/{quote(run_id, safe="")}" target="_top">DAG run</a>'


def _file(rel: str | None, label: str) -> str:
    return f'<a href="{PREFIX}/files/{quote(rel)}" target="_blank">{label}</a>' if rel else ""


VERDICT = {
    "retrain": ("retrain requested", "bad"),
    "suppressed": ("suppressed", "warn"),
    "no_retrain": ("ok", "good"),
    "quarantined": ("quarantined", "bad"),
}
OUTCOME = {"validated": "good", "rejected": "warn", "pending": "muted", "failed": "bad"}
LEVEL = {"high": "bad", "moderate": "warn", "low": "good", "unknown": "muted"}


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _verdict(v: str) -> str:
    text, kind = VERDICT.get(v, (v, "muted"))
    return _badge(text, kind)


def _overview_body(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">No model configs found (include/models/*.yaml).</p>'
    trs = []
    for r in rows:
        if r.get("config_error"):  # this model's config is invalid: say so, the others render as usual
            trs.append(
                f"<tr><td><b>{_e(r['name'])}</b><div class='sub'>{_badge('invalid config', 'bad')}</div></td>"
                f"<td colspan='5' class='why'><pre>{_e(r['config_error'][:1500])}</pre></td></tr>"
            )
            continue
        ch, last, rt = r["champion"], r["last_check"], r["last_retrain"]
        champ = (
            f'<b>v{ch["version"]}</b><div class="sub">{_e(r["metric"])} {_num(ch["metric"])}</div>'
            if ch
            else '<span class="muted">none yet</span>'
        )
        check = (
            f"{_verdict(last['verdict'])}<div class='sub'>{_when(last['at'])}<br>{_e(last['batch'])}</div>"
            if last
            else '<span class="muted">no batch checked yet</span>'
        )
        drift = f"{_badge(r['drift_level'], LEVEL.get(r['drift_level'], 'muted'))}" + (
            f'<div class="sub">share {_num(r["drift_share"], ".2f")}</div>'
            if r["drift_share"] is not None
            else ""
        )
        retrain = (
            f"{_badge(rt['outcome'], OUTCOME.get(rt['outcome'], 'muted'))}"
            f"<div class='sub'>{_when(rt['at'])} · {_e(rt['trigger_source'])}"
            f"{' → v' + str(rt['version']) if rt['version'] else ''}</div>"
            f"<div class='why'>{_e('; '.join(rt['reasons'] or [])[:160])}</div>"
            if rt
            else '<span class="muted">never</span>'
        )
        chal = (
            f"v{r['challenger']['version']} ({_num(r['challenger']['metric'])})"
            if r["challenger"]
            else '<span class="muted">–</span>'
        )
        trs.append(
            f"""<tr>
<td><a class="model" href="{PREFIX}/models/{quote(r["name"])}">{_e(r["name"])}</a>
<div class="sub">{_e(r["task"])} · {r["checks"]} checks · {r["retrain_requests"]} requests
{" · " + str(r["pending_batches"]) + " waiting" if r["pending_batches"] else ""}
{" · " + str(r["quarantined"]) + " quarantined" if r["quarantined"] else ""}
{" · " + str(r["stuck"]) + " stuck in processing" if r.get("stuck") else ""}</div></td>
<td>{champ}</td><td>{check}</td><td>{drift}</td><td>{retrain}</td><td>{chal}</td></tr>"""
        )
    return f"""
<p class="lead">Is a model drifting, why did it retrain, which version serves, and where is the report?</p>
<table class="grid"><thead><tr><th>Model</th><th>Champion</th><th>Last check</th><th>Drift</th>
<th>Last retrain</th><th>Challenger</th></tr></thead><tbody>{"".join(trs)}</tbody></table>"""


def _chart(checks: list[dict[str, Any]], thresholds: dict[str, Any], metric: str) -> str:
    """Inline SVG: drift share and prediction drift (top), the metric (bottom), with marks."""
    pts = [c for c in checks if c["verdict"] != "quarantined"]
    if not pts:
        return '<p class="muted">No batches checked yet: the chart appears after the first monitor run.</p>'
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

    parts = [f'<svg viewBox="0 0 {w} {b1 + 30}" class="chart" role="img" aria-label="drift over batches">']
    for v in (0, dmax / 2, dmax):
        parts.append(
            f'<line x1="{left}" x2="{w - right}" y1="{yd(v):.1f}" y2="{yd(v):.1f}" class="gridline"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{yd(v) + 4:.1f}" class="axis" text-anchor="end">{v:.2g}</text>'
        )
    for v in (mlo, (mlo + mhi) / 2, mhi):
        parts.append(
            f'<line x1="{left}" x2="{w - right}" y1="{ym(v):.1f}" y2="{ym(v):.1f}" class="gridline"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{ym(v) + 4:.1f}" class="axis" text-anchor="end">{v:.3g}</text>'
        )
    for key, cls in (("data_drift_share", "t-drift"), ("prediction_drift", "t-pdrift")):
        t = thresholds.get(key)
        if t is not None and t <= dmax:
            parts.append(
                f'<line x1="{left}" x2="{w - right}" y1="{yd(t):.1f}" y2="{yd(t):.1f}" class="threshold {cls}">'
                f"<title>{key} threshold {t}</title></line>"
            )
    # retrain requests (orange), suppressed (grey), promotions (green: champion version changed)
    prev = None
    for i, c in enumerate(pts):
        if c["verdict"] == "retrain":
            parts.append(
                f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y0}" y2="{b1}" class="mark-retrain">'
                f"<title>{_e(c['batch'])}: retrain requested: {_e('; '.join(c['reasons']))}</title></line>"
            )
        elif c["verdict"] == "suppressed":
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y1 + 12}" r="4" class="mark-suppressed">'
                f"<title>{_e(c['batch'])}: suppressed ({_e(c['suppressed_by'])})</title></circle>"
            )
        v = c["champion_version"]
        if prev is not None and v is not None and v != prev:
            xm = x(i) - step / 2
            parts.append(
                f'<line x1="{xm:.1f}" x2="{xm:.1f}" y1="{y0}" y2="{b1}" class="mark-promote">'
                f"<title>champion v{prev} → v{v}</title></line>"
                f'<text x="{xm + 3:.1f}" y="{b1 + 12}" class="promo">v{v}</text>'
            )
        prev = v if v is not None else prev

    def path(key: str, fy: Any) -> str:
        segs, pen = [], "M"
        for i, c in enumerate(pts):
            v = c[key]
            if v is None:
                pen = "M"
                continue
            segs.append(f"{pen}{x(i):.1f},{fy(v):.1f}")
            pen = "L"
        return " ".join(segs)

    for key, cls, fy in (
        ("data_drift_share", "s-drift", yd),
        ("prediction_drift", "s-pdrift", yd),
        ("metric", "s-metric", ym),
    ):
        parts.append(f'<path d="{path(key, fy)}" class="series {cls}"/>')
        for i, c in enumerate(pts):
            if c[key] is not None:
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{fy(c[key]):.1f}" r="3" class="dot {cls}">'
                    f"<title>{_e(c['batch'])}: {key} {c[key]:.3g}</title></circle>"
                )
    labels = max(1, n // 8)
    for i, c in enumerate(pts):
        if i % labels == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{b1 + 26}" class="axis" text-anchor="middle">'
                f"{_e(c['batch'].rsplit('.', 1)[0][:10])}</text>"
            )
    parts.append(
        f'<text x="{left + 6}" y="{y0 - 4}" class="panel">drift (share of features; prediction)</text>'
    )
    parts.append(
        f'<text x="{left + 6}" y="{b0 - 8}" class="panel">{_e(metric)} of the champion on labelled rows</text>'
    )
    parts.append("</svg>")
    legend = (
        '<div class="legend"><span class="k s-drift"></span>data drift share '
        '<span class="k s-pdrift"></span>prediction drift <span class="k s-metric"></span>'
        f"{_e(metric)} <span class='k mark-retrain'></span>retrain requested "
        "<span class='k mark-suppressed'></span>suppressed <span class='k mark-promote'></span>new champion "
        "<span class='k threshold'></span>trigger threshold</div>"
    )
    return "".join(parts) + legend


def _model_body(d: dict[str, Any]) -> str:
    s = d["summary"]
    name = s["name"]
    ch = s["champion"]
    cards = [
        (
            "Champion",
            f"v{ch['version']}" if ch else "none",
            f"{s['metric']} {_num(ch['metric'])} · since {_when(ch['since'])}" if ch else "",
        ),
        ("Drift now", s["drift_level"], f"share {_num(s['drift_share'], '.2f')}"),
        (
            "Last check",
            VERDICT.get(s["last_check"]["verdict"], (s["last_check"]["verdict"],))[0]
            if s["last_check"]
            else "–",
            _when(s["last_check"]["at"]) if s["last_check"] else "",
        ),
        (
            "Retrains",
            str(len(d["retrains"])),
            f"{sum(1 for r in d['retrains'] if r['version'])} registered · "
            f"{sum(1 for r in d['retrains'] if r['outcome'] == 'rejected')} rejected",
        ),
        ("Challenger", f"v{s['challenger']['version']}" if s["challenger"] else "none", ""),
    ]
    card_html = "".join(
        f'<div class="card"><div class="label">{_e(t)}</div><div class="value">{_e(v)}</div>'
        f'<div class="sub">{sub}</div></div>'
        for t, v, sub in cards
    )
    log_rows = []
    for c in reversed(d["checks"]):
        why = _e("; ".join(c["reasons"] or []) or "no trigger fired")
        if c["suppressed_by"]:
            why += f' <span class="muted">[{_e(c["suppressed_by"])}]</span>'
        links = " · ".join(
            x
            for x in (
                _file(c["evidently"], "Evidently"),
                _file(c["gx_docs"], "GX Data Docs"),
                _mlflow(c["mlflow_experiment_id"], c["mlflow_run_id"]),
                _dagrun(f"{name}__monitor", c["dag_run_id"]),
            )
            if x
        )
        log_rows.append(
            f"<tr><td>{_e(c['batch'])}<div class='sub'>{_when(c['at'])}</div></td><td>{_verdict(c['verdict'])}</td>"
            f"<td class='num'>{_num(c['data_drift_share'], '.2f')}</td><td class='num'>{_num(c['prediction_drift'])}</td>"
            f"<td class='num'>{_num(c['metric'])}</td><td class='num'>{'v' + str(c['champion_version']) if c['champion_version'] else '–'}</td>"
            f"<td class='why'>{why}</td><td class='links'>{links}</td></tr>"
        )
    retrain_rows = []
    for r in reversed(d["retrains"]):
        outcome = _badge(r["outcome"], OUTCOME.get(r["outcome"], "muted"))
        detail = "; ".join(r["failed_checks"] or [])
        retrain_rows.append(
            f"<tr><td>{_when(r['at'])}</td><td>{_e(r['trigger_source'])}</td>"
            f"<td class='why'>{_e('; '.join(r['reasons'] or []))}</td><td>{outcome}"
            f"{'<div class=sub>' + _e(detail[:300]) + '</div>' if detail else ''}</td>"
            f"<td class='num'>{_num(r['holdout_metric'])}</td><td class='num'>{_num(r['champion_metric'])}</td>"
            f"<td>{'v' + str(r['version']) if r['version'] else '–'}</td>"
            f"<td class='links'>{_mlflow(r['mlflow_experiment_id'], r['mlflow_run_id'])} "
            f"{_dagrun(f'{name}__retrain', r['dag_run_id'])}</td></tr>"
        )
    version_rows = "".join(
        f"<tr><td><b>v{v['version']}</b> {' '.join(_badge(a, 'good' if a == 'champion' else 'warn') for a in v['aliases'])}</td>"
        f"<td>{_when(v['created'])}</td><td class='num'>{_num(v['holdout_metric'])}</td><td>{_e(v['trigger_source'])}</td>"
        f"<td class='mono'>{_e((v['snapshot_sha256'] or '')[:12])}</td></tr>"
        for v in d["versions"]
    )
    history_rows = "".join(
        f"<tr><td>{_when(h.get('at'))}</td><td>{_e(h.get('action'))} {_e(h.get('alias'))}</td>"
        f"<td>{'v' + str(h['from_version']) if h.get('from_version') else '–'} → v{_e(h.get('to_version'))}</td>"
        f"<td class='why'>{_e(h.get('reason'))}</td><td class='mono'>{_e(h.get('by'))}</td></tr>"
        for h in reversed(d["history"])
    )
    quarantine = "".join(
        f"<li><b>{_e(q['batch'])}</b>: {_e(q['message'][:300])}</li>" for q in d["quarantined"]
    )
    stuck = "".join(  # batches a monitor run left in processing/ (the next run resumes them)
        f"<tr><td>{_e(b['batch'])}</td><td>{_when(b['since'])}</td><td class='mono'>{_e(b['claimed_by'])}</td></tr>"
        for b in d.get("stuck", [])
    )
    return f"""
<p><a href="{PREFIX}/">← all models</a> · <a href="/dags/{name}__monitor" target="_top">monitor DAG</a> ·
<a href="/dags/{name}__retrain" target="_top">retrain DAG</a> (trigger it there with Params: force, reason, window)</p>
<div class="cards">{card_html}</div>
<h2>Over batches</h2>{_chart(d["checks"], d["thresholds"], s["metric"])}
<h2>Decision log</h2>
<table class="grid"><thead><tr><th>Batch</th><th>Verdict</th><th>Drift share</th><th>Pred. drift</th>
<th>{_e(s["metric"])}</th><th>Champion</th><th>Why</th><th>Evidence</th></tr></thead>
<tbody>{"".join(log_rows) or '<tr><td colspan="8" class="muted">no decisions yet</td></tr>'}</tbody></table>
<h2>Retrains</h2>
<table class="grid"><thead><tr><th>When</th><th>Trigger</th><th>Why</th><th>Outcome</th><th>Candidate</th>
<th>Champion</th><th>Version</th><th></th></tr></thead>
<tbody>{"".join(retrain_rows) or '<tr><td colspan="8" class="muted">no retrains yet</td></tr>'}</tbody></table>
<div class="two">
<div><h2>Versions</h2><table class="grid"><thead><tr><th>Version</th><th>Registered</th><th>{_e(s["metric"])}</th>
<th>Trigger</th><th>Snapshot</th></tr></thead><tbody>{version_rows or '<tr><td colspan="5" class="muted">none</td></tr>'}</tbody></table></div>
<div><h2>Promotion history</h2><table class="grid"><thead><tr><th>When</th><th>Action</th><th>Move</th><th>Why</th>
<th>By</th></tr></thead><tbody>{history_rows or '<tr><td colspan="5" class="muted">none</td></tr>'}</tbody></table></div>
</div>
{f"<h2>Quarantine</h2><ul class='q'>{quarantine}</ul>" if quarantine else ""}
{f"<h2>Stuck in processing</h2><table class='grid'><thead><tr><th>Batch</th><th>Since</th><th>Claimed by run</th></tr></thead><tbody>{stuck}</tbody></table>" if stuck else ""}"""


CSS = """
:root{--fg:#1f2933;--muted:#7b8794;--line:#e4e7eb;--bg:#fff;--soft:#f5f7fa;--good:#2f855a;--warn:#b7791f;
--bad:#c53030;--blue:#2b6cb0;--purple:#6b46c1;--teal:#0f766e}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0;padding:20px 28px;background:var(--bg)}h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:26px 0 8px}
a{color:var(--blue);text-decoration:none}a:hover{text-decoration:underline}.lead{color:var(--muted);margin:0 0 16px}
.muted{color:var(--muted)}.sub{color:var(--muted);font-size:12px}.why{max-width:520px;font-size:13px}
.mono{font-family:ui-monospace,monospace;font-size:12px;max-width:230px;word-break:break-all}
table.grid{border-collapse:collapse;width:100%}.grid th{text-align:left;font-size:12px;text-transform:uppercase;
letter-spacing:.03em;color:var(--muted);border-bottom:2px solid var(--line);padding:6px 8px}
.grid td{border-bottom:1px solid var(--line);padding:8px;vertical-align:top}.grid tr:hover td{background:var(--soft)}
.grid td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}td.links{white-space:nowrap;font-size:13px}
.badge{display:inline-block;white-space:nowrap;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.badge.good{background:var(--good)}.badge.warn{background:var(--warn)}.badge.bad{background:var(--bad)}
.badge.muted{background:var(--muted)}a.model{font-weight:600;font-size:15px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;
min-width:160px;background:var(--soft)}.card .label{font-size:12px;color:var(--muted);text-transform:uppercase}
.card .value{font-size:22px;font-weight:600}
svg.chart{width:100%;max-width:1100px;height:auto;border:1px solid var(--line);border-radius:8px;background:#fff}
.gridline{stroke:#eef0f3}.axis{font-size:11px;fill:var(--muted)}.panel{font-size:12px;fill:var(--fg);font-weight:600}
.series{fill:none;stroke-width:2}.s-drift{stroke:var(--blue);fill:var(--blue)}.s-pdrift{stroke:var(--purple);fill:var(--purple)}
.s-metric{stroke:var(--teal);fill:var(--teal)}path.series{fill:none}
.threshold{stroke-dasharray:5 4;stroke-width:1.2}.t-drift{stroke:var(--blue)}.t-pdrift{stroke:var(--purple)}
.mark-retrain{stroke:#dd6b20;stroke-width:2;opacity:.55}.mark-promote{stroke:var(--good);stroke-width:2;stroke-dasharray:2 3}
.mark-suppressed{fill:#a0aec0}.promo{font-size:10px;fill:var(--good);font-weight:600}
.legend{font-size:12px;color:var(--muted);margin:6px 0}.legend .k{display:inline-block;width:14px;height:3px;
margin:0 4px 3px 12px;vertical-align:middle}.legend .k.s-drift{background:var(--blue)}.legend .k.s-pdrift{background:var(--purple)}
.legend .k.s-metric{background:var(--teal)}.legend .k.mark-retrain{background:#dd6b20}.legend .k.mark-suppressed{background:#a0aec0;
height:8px;width:8px;border-radius:4px}.legend .k.mark-promote{background:var(--good)}.legend .k.threshold{border-top:2px dashed var(--muted);height:0}
.two{display:grid;grid-template-columns:1fr 1fr;gap:24px}@media(max-width:1000px){.two{grid-template-columns:1fr}}
ul.q{font-size:13px}
"""


def _page(title: str, body: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>
<body><h1>{_e(title)}</h1>{body}</body></html>"""


class RetrainerPlugin(AirflowPlugin):
    name = "retrainer"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [{"app": app, "url_prefix": PREFIX, "name": "Retrainer"}]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {"name": "Retraining", "href": f"{PREFIX}/", "destination": "nav", "url_route": "retraining"}
    ]
