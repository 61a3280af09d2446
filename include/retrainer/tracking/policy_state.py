"""The policy's state between monitor runs, kept in MLflow: each decision run stores the state after it as
a JSON artifact, and a head pointer (a tag on the model's monitor experiment) names the newest decision,
so reading the state costs the same whatever the length of the history.

The store reads and writes JSON: the caller turns it into its state type (``parse``), since the policy
sits above tracking in the package's layers.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, TypeVar

from retrainer.exceptions import PolicyStateError
from retrainer.tracking import runs as tracking

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
T = TypeVar("T")
STATE_ARTIFACT = "policy_state.json"
HEAD_TAG = f"{tracking.TAG}policy_head"  # monitor experiment tag: the newest decision (constant-time read)


def policy_head(model: str) -> dict[str, Any] | None:
    """The newest decision as the decide task recorded it on ``model``'s monitor experiment (tag
    ``retrainer.policy_head``): ``{run_id, batch_sha256, prev, decisions, retrain_requests}``."""
    exp = tracking.client().get_experiment(tracking.experiment_id(model, "monitor"))
    raw = exp.tags.get(HEAD_TAG)
    if not raw:
        return None
    try:
        head = json.loads(raw)
    except ValueError:
        return None
    return head if isinstance(head, dict) and head.get("run_id") else None


def state_source(model: str, exclude_sha: str | None = None) -> str | None:
    """The decision run whose stored state is the newest, other than a re-run of ``exclude_sha``: the one
    the head names (or the one before it), or for a store without a head the newest decision, found with
    one ordered query."""
    head = policy_head(model)
    if head is not None:
        return head.get("prev") if head.get("batch_sha256") == exclude_sha else head["run_id"]
    query = f"tags.`{tracking.TAG}policy_state` = '1'"
    if exclude_sha:
        query += f" and tags.`{tracking.TAG}batch_sha256` != '{exclude_sha}'"
    newest = tracking.find_runs(
        model, "monitor", query, max_results=1, order_by=["attributes.start_time DESC"]
    )
    return newest[0].info.run_id if newest else None


def load_state(
    model: str, parse: Callable[[dict[str, Any]], T], fresh: Callable[[], T], exclude_sha: str | None = None
) -> tuple[T, str | None, str | None]:
    """The state after the newest decision other than a re-run of ``exclude_sha``: (state, note, MLflow run
    it came from). ``parse`` checks the stored JSON field by field (raising :class:`PolicyStateError` or
    ``ValueError``); a state that is not one we wrote (tampered, an older pickled format) is rejected, the
    state starts ``fresh()`` and ``note`` says so (recorded with the decision). An unreachable tracking
    store raises: deciding without the state would be wrong, the task retries."""
    import mlflow
    from mlflow.exceptions import MlflowException

    source = state_source(model, exclude_sha)
    if not source:
        return fresh(), None, None
    try:
        uri = tracking.client().get_run(source).info.artifact_uri
        return parse(mlflow.artifacts.load_dict(f"{uri}/{STATE_ARTIFACT}")), None, source
    except (PolicyStateError, ValueError, FileNotFoundError) as exc:
        problem = str(exc)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        problem = str(exc)
    note = (
        f"stored policy state of decision run {source} rejected ({problem[:300]}): "
        "starting fresh (no cooldown, hysteresis or detector history)"
    )
    log.warning(note)
    return fresh(), note, source


def decision_run(model: str, sha: str) -> Any | None:
    """The decision run already recorded for the batch with content hash ``sha`` (a re-run), or None."""
    existing = tracking.find_runs(
        model,
        "monitor",
        f"tags.`{tracking.TAG}batch_sha256` = '{sha}' and tags.`{tracking.TAG}verdict` != 'quarantined'",
        max_results=1,
    )
    return existing[-1] if existing else None


def head_missed(model: str, run_id: str, sha: str, first_from: str | None) -> bool:
    """Whether the decision run ``run_id`` (recorded earlier, decided from ``first_from``) never became the
    head: its attempt failed after recording the run and before the head write, so the head still names
    the decision it was computed from. Its retry then advances the head as a first run would."""
    head = policy_head(model)
    if head is None:  # the model's very first decision, unless older decisions predate the head
        query = f"tags.`{tracking.TAG}policy_state` = '1' and tags.`{tracking.TAG}batch_sha256` != '{sha}'"
        return first_from is None and not tracking.find_runs(model, "monitor", query, max_results=1)
    return head.get("run_id") != run_id and head.get("run_id") == first_from


def advance_head(model: str, run_id: str, sha: str, prev: str | None, retrain: bool, rerun: bool) -> None:
    """Point the head at this decision (one tag write, atomic). A re-run of an older batch leaves the
    head alone; a re-run of the newest keeps its counts (adjusting the request count if it changed)."""
    head = policy_head(model) or {"decisions": 0, "retrain_requests": 0}
    if rerun and head.get("run_id") != run_id:
        return
    decisions, requests = int(head.get("decisions", 0)), int(head.get("retrain_requests", 0))
    if rerun:
        requests += int(retrain) - int(bool(head.get("retrain")))
    else:
        decisions, requests = decisions + 1, requests + int(retrain)
    value = {
        "run_id": run_id,
        "batch_sha256": sha,
        "prev": head.get("prev") if rerun else prev,
        "retrain": retrain,
        "decisions": decisions,
        "retrain_requests": requests,
    }
    c = tracking.client()
    c.set_experiment_tag(tracking.experiment_id(model, "monitor"), HEAD_TAG, json.dumps(value))
