"""What ``retrainer tune`` prints and writes: the text report, and the config with the chosen ``triggers``
block and a comment stating the evidence (checked to read back as the chosen policy)."""

from __future__ import annotations

from typing import Any

from retrainer.backtest.family import NEVER, _key
from retrainer.config import TriggerConfig, parse_config
from retrainer.exceptions import RetrainerError

LABELS = {"chosen": "chosen", "shipped_default": "shipped default", "configured": "this config's policy"}


def format_tune(report: dict[str, Any]) -> str:
    """The text printed by ``retrainer tune``."""
    m = report["metric"]
    s, v = report["search_batches"], report["verification_batches"]
    lines = [
        f"tune of {report['model']} on {report['data']}: {report['batches']} batches of {report['batch_freq']} "
        f"after {report['warmup_batches']} warm-up batches; label delay {report['label_delay_batches']} "
        f"batch(es); {m} is {'lower' if report['lower_is_better'] else 'higher'} = better",
        f"search part: {report['parts']['search']['batches'][1]} batches ({s[0]} .. {s[1]}); verification "
        f"part: {report['batches'] - report['parts']['search']['batches'][1]} batches ({v[0]} .. {v[1]}), "
        "never used to choose",
        f"searched {len(report['candidates'])} policies ({report['replays']} replays, {report['fits']} fits) "
        f"in {report['seconds']:.0f} s",
        f"chosen: {report['chosen']['name']} (the best {m} on the search part with a retrain share <= "
        f"{report['max_share']:.0%} and not below the fixed-schedule frontier)",
        *(
            ["  that is: never retrain on a signal (a human flag or `retrainer retrain` still can)"]
            if (report["chosen"]["signals"], report["chosen"]["timing"]) == NEVER
            else []
        ),
        "",
    ]
    head = f"{'policy':<22}" + "".join(
        f"{label + ' part: recovered (95% CI)':>38}{'share':>7}{'frontier':>10}{'oracle':>8}"
        for label in ("search", "verification")
    )
    lines += [head, "-" * len(head)]
    for name in report["parts"]["search"]["policies"]:
        cells = f"{LABELS.get(name, name):<22}"
        for label in ("search", "verification"):
            p = report["parts"][label]["policies"][name]
            lo, hi = p["recovered_gain_ci95"]
            ci = (
                f"{p['recovered_gain']:.0%} ({lo:.0%} .. {hi:.0%})"
                if lo == lo
                else f"{p['recovered_gain']:.0%}"
            )
            cells += (
                f"{ci:>38}{p['retrain_share']:>7.0%}{p['vs_frontier']:>10}{p['oracle_recovered_gain']:>8.0%}"
            )
        lines.append(cells)
    for label in ("search", "verification"):
        part = report["parts"][label]
        pts = ", ".join(
            f"{p['policy']} {p['recovered_gain']:.0%}/{p['retrains']}"
            for p in part["frontier"]
            if p["retrains"]
        )
        lines.append(
            f"{label} part: never {m} {part['never_mean']:.4f}, every_batch {part['every_batch_mean']:.4f} "
            f"({part['every_batch_retrains']} retrains); schedules (recovered/retrains): {pts}"
        )
        if not _every_batch_gains(report, part):
            lines.append(
                f"  on the {label} part retraining every batch is no better than never retraining: recovered "
                "gain there is the share of every_batch's loss a policy takes on (0% = as good as never)"
            )
    lines += [
        "recovered: (policy - never) / (every_batch - never); share: retrains as a share of every_batch's; "
        "frontier: against the fixed schedules at the same retrains (paired bootstrap over batches: above/below "
        "when the 95% CI excludes 0, else tied); oracle: the best schedule with the same retrains, chosen in "
        "hindsight",
        "",
        "best policies on the search part:",
    ]
    for c in report["candidates"][:8]:
        lines.append(
            f"  {c['name']:<58}{c['recovered_gain']:>7.0%}{c['retrain_share']:>7.0%}  {c['vs_frontier']:<6}"
            + ("" if c["eligible"] else "  (not eligible)")
        )
    return "\n".join(lines)


def _every_batch_gains(report: dict[str, Any], part: dict[str, Any]) -> bool:
    """Whether retraining every batch beats never retraining on a part (by the mean metric)."""
    eb, never = part["every_batch_mean"], part["never_mean"]
    return bool(eb < never) if report["lower_is_better"] else bool(eb > never)


def tuned_yaml(source_text: str, report: dict[str, Any]) -> str:
    """The config text with its top-level ``triggers:`` block replaced by the chosen policy, and a comment
    stating the evidence. Everything else in the file, comments included, is kept as it was."""
    import yaml

    block = _triggers_block(report)
    text = yaml.safe_dump({"triggers": block}, sort_keys=False, default_flow_style=None, width=100)
    lines = source_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("triggers:")), None)
    if start is None:
        out = [*lines, ""]
        end = len(lines)
        start = end
    else:
        # the block: up to its last indented line (comments and blank lines after it stay: they may
        # belong to the next key)
        end, i = start + 1, start + 1
        while i < len(lines) and (not lines[i].strip() or lines[i][0] in " \t#"):
            if lines[i].strip() and lines[i][0] in " \t":
                end = i + 1
            i += 1
        out = lines
    new = [*_evidence(report), *text.rstrip("\n").splitlines()]
    return "\n".join([*out[:start], *new, *out[end:]]) + "\n"


# the keys written: the family's keys, and the config's own where the chosen policy keeps them
_WRITTEN = (
    "data_drift",
    "prediction_drift",
    "performance",
    "error_detector",
    "cost",
    "combine",
    "cooldown_batches",
    "max_age_batches",
    "budget_share",
    "budget_burst",
    "follow_up_refit",
)


def _triggers_block(report: dict[str, Any]) -> dict[str, Any]:
    """The chosen ``triggers`` mapping: every key the search sets (so no default fills a gap), plus the
    config's own settings that differ from the defaults."""
    chosen = report["chosen"]["triggers"]
    defaults = TriggerConfig().model_dump(mode="json")
    block = {k: chosen[k] for k in _WRITTEN}
    block.update({k: v for k, v in chosen.items() if k not in block and defaults.get(k) != v})
    if block.get("budget_share") is None:
        block.pop("budget_burst", None)
    return block


def _evidence(report: dict[str, Any]) -> list[str]:
    """The comment above the written ``triggers:`` block: what was searched and what it measured."""
    out = []
    for label in ("search", "verification"):
        p = report["parts"][label]["policies"]["chosen"]
        d = report["parts"][label]["policies"]["shipped_default"]
        out.append(
            f"#   {label} part: recovered {p['recovered_gain']:.0%} of every_batch's gain with "
            f"{p['retrain_share']:.0%} of its retrains ({p['vs_frontier']} the fixed-schedule frontier; oracle "
            f"{p['oracle_recovered_gain']:.0%}); shipped default {d['recovered_gain']:.0%} with "
            f"{d['retrain_share']:.0%}"
        )
    s, v = report["search_batches"], report["verification_batches"]
    return [
        f"# Trigger policy chosen by `retrainer tune` on {report['data']} ({report['batches']} batches of "
        f"{report['batch_freq']}, label delay {report['label_delay_batches']}): {report['chosen']['name']},",
        f"# the best {report['metric']} on the search part ({s[0]} .. {s[1]}) among {len(report['candidates'])} "
        f"policies with a retrain share <= {report['max_share']:.0%}, not below the fixed-schedule frontier;",
        f"# verified on the later part ({v[0]} .. {v[1]}), which was not used to choose.",
        *out,
    ]


def check_tuned(text: str, report: dict[str, Any], source: str) -> Any:
    """The written config parsed back: it must validate and carry exactly the chosen policy."""
    import yaml

    cfg = parse_config(yaml.safe_load(text), source)
    want = TriggerConfig.model_validate(report["chosen"]["triggers"])
    if _key(cfg.triggers) != _key(want):
        raise RetrainerError(f"{source}: the written triggers block does not read back as the chosen policy")
    return cfg
