"""Model registry: register passing candidates, move aliases, keep a durable promotion history.

Aliases ``champion`` / ``challenger`` (never stages). Every alias move is also written as a
registered-model tag ``retrainer.event.<n>`` (JSON: when, action, from, to, why, by), so the history
survives later moves of the alias itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from retrainer.tracking.runs import TAG, client, holdout_metrics, unique_race_retried

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version with what the monitor needs: its training run, snapshot and holdout
    metrics (whichever alias it holds, if any)."""

    version: int
    run_id: str
    snapshot_sha256: str | None
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"runs:/{self.run_id}/model"


def _ensure_registered_model(name: str) -> None:
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        c.get_registered_model(name)
    except MlflowException:
        try:
            c.create_registered_model(name, tags={f"{TAG}managed": "true"})
        except MlflowException:  # created concurrently
            c.get_registered_model(name)


def _described(mv: Any) -> RegisteredVersion:
    return RegisteredVersion(
        version=int(mv.version),
        run_id=mv.run_id,
        snapshot_sha256=mv.tags.get(f"{TAG}snapshot_sha256"),
        metrics=holdout_metrics(client().get_run(mv.run_id)),
        tags=dict(mv.tags),
    )


def aliased(name: str, alias: str) -> RegisteredVersion | None:
    """The version ``alias`` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return _described(mv)


def champion(name: str) -> RegisteredVersion | None:
    """The version serving predictions (alias ``champion``), or None before the first model."""
    return aliased(name, CHAMPION)


def challenger(name: str) -> RegisteredVersion | None:
    """The version staged against the champion (alias ``challenger``: shadow or approval), or None."""
    return aliased(name, CHALLENGER)


def get_version(name: str, version: int) -> RegisteredVersion:
    """A given version, alias or not, in the same shape as :func:`champion`."""
    return _described(client().get_model_version(name, str(version)))


def find_version(name: str, run_key: str) -> int | None:
    """An existing version registered for ``run_key`` (snapshot + config), for idempotent re-runs."""
    c = client()
    for mv in c.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(f"{TAG}run_key") == run_key:
            return int(mv.version)
    return None


def register(name: str, run_id: str, run_key: str, tags: dict[str, str]) -> tuple[int, bool]:
    """Register ``runs:/<run_id>/model`` unless this run_key already has a version: (version, created)."""
    existing = find_version(name, run_key)
    if existing is not None:
        log.info(
            "model %s already has version %s for run_key %s: not registering again", name, existing, run_key
        )
        return existing, False
    _ensure_registered_model(name)
    c = client()
    mv = c.create_model_version(
        name, f"runs:/{run_id}/model", run_id=run_id, tags={**tags, f"{TAG}run_key": run_key}
    )
    same = sorted(
        int(m.version)
        for m in c.search_model_versions(f"name = '{name}'")
        if m.tags.get(f"{TAG}run_key") == run_key
    )
    if same and same[0] != int(mv.version):  # a concurrent registration of the same run_key won: undo ours
        c.delete_model_version(name, mv.version)
        log.info(
            "model %s: version %s already registered run_key %s concurrently; ours removed",
            name,
            same[0],
            run_key,
        )
        return same[0], False
    log.info("registered %s version %s", name, mv.version)
    return int(mv.version), True


def history(name: str) -> list[dict[str, Any]]:
    """Every recorded alias move, oldest first, numbered ``seq`` 1, 2, ... in that order."""
    from mlflow.exceptions import MlflowException

    try:
        rm = client().get_registered_model(name)
    except MlflowException:
        return []
    keyed = [
        (_order(k), e)
        for k, v in rm.tags.items()
        if k.startswith(f"{TAG}event.") and (e := _event(name, k, v)) is not None
    ]
    events = _without_race_twins([e for _, e in sorted(keyed, key=lambda kv: kv[0])])
    for i, e in enumerate(events, start=1):
        e["seq"] = i
    return events


def _event(name: str, key: str, raw: str) -> dict[str, Any] | None:
    """One recorded event, or None (with a warning) for a tag that is not one we wrote: one bad tag must
    not hide the rest of the history."""
    try:
        event = json.loads(raw)
    except ValueError as exc:
        log.warning("model %s: history tag %s is not JSON (%s): skipped", name, key, exc)
        return None
    if not isinstance(event, dict):
        log.warning("model %s: history tag %s is not an event record: skipped", name, key)
        return None
    return event


TWIN_KEYS = ("action", "from_version", "to_version")  # equal in two racing records of one alias move


def _without_race_twins(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the second of two racing writers' records of one alias move.

    Two retrains of one batch may promote the same version at the same moment: both see the old holder,
    both move the alias, both record ``A: 3 -> 4``. The move happened once. A recorded move whose alias
    already went from ``from_version`` to ``to_version`` in the alias's previous event cannot be a second
    real move (the alias no longer pointed at ``from_version``), so it is folded into the first; its id is
    kept in the first event's ``twins``. Notes (no versions) are never folded.
    """
    out: list[dict[str, Any]] = []
    last: dict[str, dict[str, Any]] = {}
    for e in events:
        prev = last.get(e.get("alias", ""))
        moves = e.get("from_version") != e.get("to_version")
        if moves and prev is not None and all(prev.get(k) == e.get(k) for k in TWIN_KEYS):
            prev.setdefault("twins", []).append(e.get("id"))
            continue
        last[e.get("alias", "")] = e
        out.append(e)
    return out


def _order(key: str) -> tuple[int, str]:
    """Sort key of an event tag: ``event.000001`` (sequential, older releases) before
    ``event.<time_ns>-<random>`` (unique per writer, so concurrent moves never overwrite each other)."""
    suffix = key.rsplit(".", 1)[-1]
    return (0, suffix.zfill(20)) if suffix.isdigit() else (1, suffix)


def record_event(
    name: str, action: str, alias: str, from_version: int | None, to_version: int | None, reason: str, by: str
) -> dict[str, Any]:
    """Append one event to the registered model's history (tag ``retrainer.event.<time_ns>-<random>``).

    :func:`move_alias` and :func:`remove_alias` record their moves with it; concurrent writers never
    overwrite each other's events. Returns the event with its ``seq`` in :func:`history`."""
    import time
    import uuid

    key = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    event = {
        "id": key,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": action,
        "alias": alias,
        "from_version": from_version,
        "to_version": to_version,
        "reason": reason[:1500],
        "by": by,
    }
    client().set_registered_model_tag(name, f"{TAG}event.{key}", json.dumps(event))
    log.info("%s: %s alias %s: %s -> %s (%s)", name, action, alias, from_version, to_version, reason[:200])
    event["seq"] = next(
        (e["seq"] for e in history(name) if key == e.get("id") or key in e.get("twins", ())), 0
    )
    return event


def _set_version_tag(name: str, version: int, key: str, value: str) -> None:
    """Set a model-version tag, tolerating a writer that set the same tag at the same moment (two retrains
    promoting the version their run key shares)."""
    unique_race_retried(lambda: client().set_model_version_tag(name, str(version), key, value))


def move_alias(
    name: str, alias: str, version: int, *, action: str, reason: str, by: str
) -> dict[str, Any] | None:
    """Point ``alias`` at ``version`` and record the move; a no-op (None) if it already points there."""
    c = client()
    current = aliased(name, alias)
    if current is not None and current.version == version:
        return None
    c.set_registered_model_alias(name, alias, str(version))
    event = record_event(name, action, alias, current.version if current else None, version, reason, by)
    _set_version_tag(name, version, f"{TAG}{alias}_since", event["at"])
    return event


def remove_alias(
    name: str, alias: str, *, action: str, reason: str, by: str, record: bool = True
) -> dict[str, Any] | None:
    """Delete ``alias`` (e.g. retire a challenger) and record why; a no-op (None) if nothing holds it."""
    c = client()
    current = aliased(name, alias)
    if current is None:
        return None
    c.delete_registered_model_alias(name, alias)
    if action == "retire":
        _set_version_tag(name, current.version, f"{TAG}retired", reason[:5000])
    if not record:
        return None
    return record_event(name, action, alias, current.version, None, reason, by)


def is_retired(name: str, version: int) -> str | None:
    """The reason ``version`` was retired, or None."""
    mv = client().get_model_version(name, str(version))
    return mv.tags.get(f"{TAG}retired")


def previous_champion(name: str) -> int | None:
    """The version that held ``champion`` before the current one (from the history), or None."""
    current = champion(name)
    if current is None:
        return None
    for event in reversed(history(name)):
        if event["alias"] == CHAMPION and event["to_version"] == current.version and event["from_version"]:
            return int(event["from_version"])
    return None


def version_exists(name: str, version: int) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client().get_model_version(name, str(version))
    except MlflowException:
        return False
    return True
