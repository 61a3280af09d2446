"""Promotion modes, shadow evaluation, approval, rollback: every alias move goes through the registry's
recorded history (``retrainer.event.<n>`` tags on the registered model).

- ``immediate``: a validated candidate becomes ``champion`` at once.
- ``shadow``: it becomes ``challenger``; the monitor DAG scores both models at every following batch
  (:func:`shadow_score`) on the rows labelled by now of the batches seen since (late labels included),
  once there are ``min_labelled_rows``; after ``shadow_batches`` such batches on which it was
  non-inferior it is promoted, and the first on which it trails the champion by more than ``margin``
  retires it.
- ``approval``: it becomes ``challenger`` and the retrain run ends; the model's approval DAG asks a person
  (Airflow's human-in-the-loop operator, optionally only the configured approvers) and
  :func:`apply_approval` promotes or retires it with who decided. No answer within the configured timeout
  retires it (recorded as a timeout).

With no champion yet (the first model) every mode promotes at once: there is nothing to compare against.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import NoChampionError, RetrainerError
from retrainer.ml import metrics
from retrainer.ml.train import prepare
from retrainer.stages import monitor
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking
from retrainer.tracking.artifacts import load_run_model, missing_features, model_config

if TYPE_CHECKING:
    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)
WATCH_ACTION = "retrainer.watch_action"  # on the monitor run: what the rollback watch did with the batch
DECIDED = ("kept", "rolled_back")  # watch actions that count towards rollback_batches


def stage(
    cfg: ModelConfig,
    version: int,
    reason: str,
    by: str,
    compared_with: int | str | None = "unchecked",
    champion_unscorable: str | None = None,
) -> dict[str, Any]:
    """Move the validated ``version`` as far as the model's promotion mode allows right now.

    ``compared_with`` is the champion version the candidate was evaluated against (None: there was none).
    When the champion moved since (a rollback or another promotion in between), the candidate is not made
    champion on a comparison with a model that no longer serves: it is staged as ``challenger`` and
    ``refused`` says why (a re-run of the retrain evaluates it against the current champion).

    ``champion_unscorable`` (why the champion cannot score the configured features, from ``evaluate``):
    there is no model to shadow or to keep while a person decides, so every mode promotes at once, as for
    the first model."""
    mode = cfg.promotion.mode
    champ = registry.champion(cfg.name)
    moved = (
        compared_with != "unchecked" and champ is not None and champ.version not in (compared_with, version)
    )
    if moved and champ is not None:
        was = "no champion" if compared_with is None else f"champion v{compared_with}"
        refused = (
            f"v{version} was evaluated against {was}, but the champion is now v{champ.version}: not "
            f"promoted; it stays registered as challenger (re-run the retrain to compare it with "
            f"v{champ.version})"
        )
        log.warning("%s: %s", cfg.name, refused)
        event = registry.move_alias(
            cfg.name, registry.CHALLENGER, version, action="challenger", reason=refused, by=by
        )
        return {
            "version": version,
            "mode": mode,
            "alias": registry.CHALLENGER,
            "awaiting": "re-evaluation",
            "event": event,
            "refused": refused,
        }
    if champion_unscorable and champ is not None and not moved:
        reason = f"{reason} | {champion_unscorable}"
    if mode == "immediate" or champ is None or (champion_unscorable and not moved):
        event = registry.move_alias(
            cfg.name, registry.CHAMPION, version, action="promote", reason=reason, by=by
        )
        return {
            "version": version,
            "mode": mode,
            "alias": registry.CHAMPION,
            "awaiting": None,
            "event": event,
        }
    if champ.version == version:
        return {"version": version, "mode": mode, "alias": registry.CHAMPION, "awaiting": None, "event": None}
    retired = registry.is_retired(cfg.name, version)
    if retired:  # a re-run of the same snapshot + config gets the same version back: do not revive it
        log.warning("v%s of %s was retired (%s): not staging it again", version, cfg.name, retired)
        return {"version": version, "mode": mode, "alias": None, "awaiting": None, "event": None}
    event = registry.move_alias(
        cfg.name, registry.CHALLENGER, version, action="challenger", reason=f"{mode}: {reason}", by=by
    )
    return {"version": version, "mode": mode, "alias": registry.CHALLENGER, "awaiting": mode, "event": event}


def _score(cfg: ModelConfig, version: registry.RegisteredVersion, lab: Any) -> float | None:
    """``version``'s metric on the labelled rows ``lab``, predicted with the features it was trained on;
    None when ``lab`` lacks one of them (it cannot score this schema)."""

    if missing_features(cfg, version.run_id, lab.columns):
        return None
    view = model_config(cfg, version.run_id)
    return metrics.score(view, load_run_model(version.run_id, cfg), prepare(view, lab))[cfg.metric]


# -- shadow ----------------------------------------------------------------------------------------------
def _shadow_runs(cfg: ModelConfig, challenger: int) -> list[Any]:
    return tracking.find_runs(
        cfg.name, "monitor", f"tags.`retrainer.shadow_challenger_version` = '{challenger}'"
    )


def shadow_score(
    cfg: ModelConfig, claim: dict[str, Any], decision: dict[str, Any], run_id: str = ""
) -> dict[str, Any]:
    """Score the batch with champion and challenger, log both on the batch's monitor run, and promote or
    retire the challenger when the evidence is in. Nothing to do without a challenger. Runs after
    :func:`watch_champion` (the champion it compares against is the one the watch left in place)."""

    chal = registry.challenger(cfg.name)
    champ = registry.champion(cfg.name)
    if chal is None or champ is None or cfg.promotion.mode != "shadow":
        return {"challenger_version": chal.version if chal else None, "verdict": "no_challenger"}
    seen = [r.data.tags.get("retrainer.batch", "") for r in _shadow_runs(cfg, chal.version)]
    lab = monitor.labelled_evidence(cfg, claim, seen)
    need = cfg.promotion.min_labelled_rows
    champ_v = _score(cfg, champ, lab) if len(lab) else None
    out: dict[str, Any] = {
        "challenger_version": chal.version,
        "champion_version": champ.version,
        "metric": cfg.metric,
        "labelled_rows": len(lab),
        "min_labelled_rows": need,
    }
    c = tracking.client()
    mlflow_run = decision["mlflow_run_id"]
    chal_v = _score(cfg, chal, lab) if len(lab) else None
    if len(lab) and (champ_v is None or chal_v is None):  # a model trained on features these rows lack
        out["verdict"] = "champion_unscorable" if champ_v is None else "challenger_unscorable"
    elif len(lab) < need or champ_v is None or chal_v is None:
        out["verdict"] = "no_labels" if len(lab) == 0 else "waiting_for_labels"
    else:
        worse = metrics.worse_by(chal_v, champ_v, cfg.lower_is_better)
        out.update(champion=champ_v, challenger=chal_v, worse_by=worse)
        out["verdict"] = "non_inferior" if worse <= cfg.promotion.margin else "inferior"
        c.log_metric(mlflow_run, f"shadow_champion_{cfg.metric}", champ_v)
        c.log_metric(mlflow_run, f"shadow_challenger_{cfg.metric}", chal_v)
    for k in ("challenger_version", "champion_version", "verdict"):
        c.set_tag(mlflow_run, f"retrainer.shadow_{k}", str(out[k]))
    runs = _shadow_runs(cfg, chal.version)
    good = [r for r in runs if r.data.tags.get("retrainer.shadow_verdict") == "non_inferior"]
    out["non_inferior_batches"] = len(good)
    _shadow_act(cfg, claim, chal, champ, out, good, f"dag_run:{run_id}" if run_id else "monitor")
    log.info("shadow on %s: %s", claim["batch"], out)
    return out


def _shadow_act(
    cfg: ModelConfig,
    claim: dict[str, Any],
    chal: registry.RegisteredVersion,
    champ: registry.RegisteredVersion,
    out: dict[str, Any],
    good: list[Any],
    by: str,
) -> None:
    """Promote, retire or keep waiting on the challenger after a shadow batch (``out["action"]``);
    ``good``: its monitor runs with a non-inferior verdict."""
    if out["verdict"] == "champion_unscorable":  # nothing to shadow: the challenger can, the champion not
        reason = (
            f"shadow: champion v{champ.version} cannot score batch {claim['batch']} (it was trained on "
            f"features the batch lacks); challenger v{chal.version} can"
        )
        out["event"] = registry.move_alias(
            cfg.name, registry.CHAMPION, chal.version, action="promote", reason=reason, by=by
        )
        registry.remove_alias(
            cfg.name, registry.CHALLENGER, action="graduate", reason=reason, by=by, record=False
        )
        out["action"] = "promoted"
    elif out["verdict"] == "challenger_unscorable":
        out["action"] = "waiting"
    elif out["verdict"] == "inferior":
        reason = (
            f"shadow: on batch {claim['batch']} challenger v{chal.version} {cfg.metric} {out['challenger']:.4g} "
            f"vs champion v{champ.version} {out['champion']:.4g} ({out['worse_by']:+.1%} worse > margin "
            f"{cfg.promotion.margin:.0%})"
        )
        out["event"] = registry.remove_alias(
            cfg.name, registry.CHALLENGER, action="retire", reason=reason, by=by
        )
        out["action"] = "retired"
    elif len(good) >= cfg.promotion.shadow_batches:
        values = [r.data.metrics.get(f"shadow_challenger_{cfg.metric}") for r in good]
        base = [r.data.metrics.get(f"shadow_champion_{cfg.metric}") for r in good]
        reason = (
            f"shadow: challenger v{chal.version} non-inferior on {len(good)} batches (margin "
            f"{cfg.promotion.margin:.0%}): {cfg.metric} "
            + ", ".join(f"{a:.4g} vs {b:.4g}" for a, b in zip(values, base, strict=True))
        )
        out["event"] = registry.move_alias(
            cfg.name, registry.CHAMPION, chal.version, action="promote", reason=reason, by=by
        )
        registry.remove_alias(
            cfg.name, registry.CHALLENGER, action="graduate", reason=reason, by=by, record=False
        )
        out["action"] = "promoted"
    else:
        out["action"] = "waiting"


def watch_champion(
    cfg: ModelConfig, claim: dict[str, Any], decision: dict[str, Any], run_id: str = ""
) -> dict[str, Any] | None:
    """Automatic rollback: for ``rollback_batches`` decided batches after a promotion, score the previous
    champion too; if the new one trails it by more than ``margin``, roll back and say so.

    Both models are scored on every row labelled by now of the batches seen since the promotion (the
    batch's own labels and late ones from the labels feed); with fewer than ``min_labelled_rows`` the
    batch is recorded as waiting and the decision is left to a later batch."""

    m = cfg.promotion.rollback_batches
    champ = registry.champion(cfg.name)
    if not m or champ is None:
        return None
    previous = _replaced(cfg, champ)
    if previous is None:
        return None  # only a promotion is watched (not a rollback, not the first model)
    watched = tracking.find_runs(
        cfg.name,
        "monitor",
        f"tags.`retrainer.watch_champion_version` = '{champ.version}' and "
        f"tags.`retrainer.batch_sha256` != '{claim['sha256']}'",
    )
    decided = [r for r in watched if r.data.tags.get(WATCH_ACTION, "kept") in DECIDED]  # older runs: decided
    if len(decided) >= m:
        return {"champion_version": champ.version, "action": "watch_over"}
    lab = monitor.labelled_evidence(cfg, claim, [r.data.tags.get("retrainer.batch", "") for r in watched])
    c = tracking.client()
    mlflow_run = decision["mlflow_run_id"]
    c.set_tag(mlflow_run, "retrainer.watch_champion_version", str(champ.version))
    c.set_tag(mlflow_run, "retrainer.watch_previous_version", str(previous.version))
    need = cfg.promotion.min_labelled_rows
    if len(lab) < need:
        action = "no_labels" if len(lab) == 0 else "waiting_for_labels"
        c.set_tag(mlflow_run, WATCH_ACTION, action)
        log.info(
            "champion watch on %s: %d labelled row(s) since the promotion, %d needed: waiting",
            claim["batch"],
            len(lab),
            need,
        )
        return {
            "champion_version": champ.version,
            "previous_version": previous.version,
            "labelled_rows": len(lab),
            "min_labelled_rows": need,
            "action": action,
        }
    new_v, old_v = _score(cfg, champ, lab), _score(cfg, previous, lab)
    if new_v is None or old_v is None:  # never roll back to a model that cannot score these rows
        who = "previous_champion" if old_v is None else "champion"
        c.set_tag(mlflow_run, WATCH_ACTION, f"{who}_unscorable")
        return {"champion_version": champ.version, "action": f"{who}_unscorable"}
    worse = metrics.worse_by(new_v, old_v, cfg.lower_is_better)
    c.log_metric(mlflow_run, f"watch_previous_{cfg.metric}", old_v)
    out: dict[str, Any] = {
        "champion_version": champ.version,
        "previous_version": previous.version,
        "champion": new_v,
        "previous": old_v,
        "worse_by": worse,
        "labelled_rows": len(lab),
        "batch_of_watch": len(decided) + 1,
        "action": "kept",
    }
    if worse > cfg.promotion.margin:
        reason = (
            f"automatic: on batch {claim['batch']} (watch batch {len(decided) + 1} of {m}, {len(lab)} "
            f"labelled rows) champion v{champ.version} {cfg.metric} {new_v:.4g} vs previous champion "
            f"v{previous.version} {old_v:.4g} ({worse:+.1%} worse > margin {cfg.promotion.margin:.0%})"
        )
        out["rollback"] = rollback(
            cfg.name, previous.version, reason, f"dag_run:{run_id}" if run_id else "monitor"
        )
        out["action"] = "rolled_back"
    c.set_tag(mlflow_run, WATCH_ACTION, out["action"])
    log.info("champion watch on %s: %s", claim["batch"], out)
    return out


def _replaced(cfg: ModelConfig, champ: registry.RegisteredVersion) -> registry.RegisteredVersion | None:
    """The version ``champ`` replaced when its last champion move was a promotion; else None."""
    last = next((e for e in reversed(registry.history(cfg.name)) if e["alias"] == registry.CHAMPION), None)
    if (
        not last
        or last["action"] != "promote"
        or not last["from_version"]
        or last["to_version"] != champ.version
    ):
        return None
    return registry.get_version(cfg.name, int(last["from_version"]))


# -- approval --------------------------------------------------------------------------------------------
APPROVE, REJECT = "Approve", "Reject"


def pending_approval(cfg: ModelConfig) -> dict[str, Any] | None:
    """The challenger waiting for a person, with why it was staged; None when there is none."""
    chal = registry.challenger(cfg.name)
    if chal is None:
        return None
    champ = registry.champion(cfg.name)
    staged: dict[str, Any] = next(
        (
            e
            for e in reversed(registry.history(cfg.name))
            if e.get("alias") == registry.CHALLENGER and e.get("to_version") == chal.version
        ),
        {},
    )
    return {
        "version": chal.version,
        "champion_version": champ.version if champ else None,
        "reason": staged.get("reason") or "",
        "staged_at": staged.get("at"),
        "timeout": cfg.promotion.approval_timeout,
        "approvers": list(cfg.promotion.approvers),
    }


def apply_approval(
    cfg: ModelConfig, staged: dict[str, Any], response: dict[str, Any], by: str
) -> dict[str, Any]:
    """Promote (``Approve``) or retire (``Reject``) the staged challenger, recording who decided.

    No answer within ``promotion.approval_timeout`` arrives as the default option ``Reject`` with no user:
    the challenger is retired and the history says it timed out. A challenger replaced by a newer
    candidate while its request waited is left alone (``superseded``): the newer one gets its own request.
    """
    version = int(staged["version"])
    chosen = list(response.get("chosen_options") or [])
    user = response.get("responded_by_user") or {}
    timed_out = not user.get("name")
    chal = registry.challenger(cfg.name)
    champ = registry.champion(cfg.name)
    if chal is None and champ is not None and champ.version == version and chosen == [APPROVE]:
        return {"version": version, "decision": "approved", "event": None}  # a re-run after the promotion
    if chal is not None and chal.version != version:
        log.warning("v%s of %s is no longer the challenger: request superseded", version, cfg.name)
        return {"version": version, "decision": "superseded", "event": None}
    if chal is None:
        if registry.is_retired(cfg.name, version):  # a re-run after the rejection
            return {"version": version, "decision": "rejected", "event": None}
        raise RetrainerError(f"v{version} of {cfg.name} is no longer the challenger: nothing to apply")
    if chosen == [APPROVE] and not timed_out:
        who = f"{by}: approved by {user['name']}"
        event = registry.move_alias(
            cfg.name, registry.CHAMPION, version, action="promote", reason=f"approval: {APPROVE}", by=who
        )
        registry.remove_alias(
            cfg.name, registry.CHALLENGER, action="graduate", reason="approved", by=who, record=False
        )
        return {"version": version, "decision": "approved", "by": user["name"], "event": event}
    if timed_out:
        reason = f"approval: no answer within {cfg.promotion.approval_timeout}; challenger v{version} retired"
        who = f"{by}: timeout"
    else:
        reason = f"approval: {REJECT} by {user['name']}"
        who = f"{by}: rejected by {user['name']}"
    event = registry.remove_alias(cfg.name, registry.CHALLENGER, action="retire", reason=reason, by=who)
    return {
        "version": version,
        "decision": "timed_out" if timed_out else "rejected",
        "by": None if timed_out else user["name"],
        "reason": reason,
        "event": event,
    }


# -- rollback --------------------------------------------------------------------------------------------
def rollback(name: str, to_version: int | None, reason: str, by: str) -> dict[str, Any]:
    """Point ``champion`` back at ``to_version`` (default: the previous champion) and record it."""
    current = registry.champion(name)
    if current is None:
        raise NoChampionError(f"model {name!r} has no champion to roll back")
    target = to_version if to_version is not None else registry.previous_champion(name)
    if target is None:
        raise RetrainerError(f"model {name!r}: no previous champion in the history; pass a version")
    if not registry.version_exists(name, target):
        raise RetrainerError(f"model {name!r} has no version {target}")
    if target == current.version:
        raise RetrainerError(f"v{target} of {name!r} is already the champion")
    text = f"rollback v{current.version} -> v{target}" + (f": {reason}" if reason else "")
    event = registry.move_alias(name, registry.CHAMPION, target, action="rollback", reason=text, by=by)
    tracking.client().set_model_version_tag(name, str(current.version), "retrainer.rolled_back", text[:5000])
    return {"from_version": current.version, "to_version": target, "event": event}
