"""The model config's JSON Schema and its Markdown reference, both generated from the pydantic models.

``python -m retrainer.config.reference --write`` rewrites the committed copies in ``docs/configuration/``
(a unit test fails when they are out of date); ``retrainer config-schema`` prints the schema.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from retrainer.config import DURATION_RE, ModelConfig

if typing.TYPE_CHECKING:
    from pydantic.fields import FieldInfo

SCHEMA_ID = "model-config.schema.json"
DOCS_DIR = Path("docs/configuration")

# Pages that explain a section at length; the reference links to them.
SEE_ALSO = {
    "data": "../operating/data.md",
    "data.impute": "../operating/data.md#missing-values-and-all-null-columns",
    "model": "../how-to/bring-your-own-model.md",
    "training": "../concepts.md#the-retrain-path",
    "triggers": "../concepts.md#the-trigger-policy",
    "triggers.performance": "../backtest/index.md#how-the-trigger-policy-works",
    "triggers.cost": "../backtest/index.md#how-the-trigger-policy-works",
    "triggers.estimation": "../backtest/index.md#how-the-trigger-policy-works",
    "data.features[]": "../operating/data.md#missing-values-and-all-null-columns",
    "alerts.channels[]": "../operating/alerts.md",
    "validation": "../promotion.md#validation-before-deployment",
    "promotion": "../promotion.md#promotion-modes",
    "alerts": "../operating/alerts.md",
    "backtest": "../backtest/index.md",
    "retention": "../scale.md",
}


# ---------------------------------------------------------------------------------------------- schema


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 7) of a model config file, with the defaults filled in for editors."""
    schema = ModelConfig.model_json_schema(mode="validation")
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"  # the draft YAML language servers support
    schema["title"] = "Retrainer model config"
    for model, props in _schema_properties(schema):
        for name, field in model.model_fields.items():
            if field.exclude:  # set by the loader, not written in a file
                props.pop(name, None)
                continue
            if field.default_factory is not None and name in props:
                props[name]["default"] = _jsonable(field.get_default(call_default_factory=True))
    schema.get("required", []).sort()
    _tidy_descriptions(schema)
    return schema


def _tidy_descriptions(node: Any) -> None:
    """Docstrings become descriptions: Markdown code spans, one paragraph per blank line."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == "description" and isinstance(value, str):
                node[key] = _prose(value)
                node["markdownDescription"] = node[key]  # editors render its `code` on hover
            else:
                _tidy_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _tidy_descriptions(item)


def _prose(text: str) -> str:
    return re.sub(r"(?<!\n)\n(?!\n)", " ", inspect.cleandoc(text).replace("``", "`"))


def _schema_properties(schema: dict[str, Any]) -> list[tuple[type[BaseModel], dict[str, Any]]]:
    models = {m.__name__: m for m in _models(ModelConfig)}
    out: list[tuple[type[BaseModel], dict[str, Any]]] = [(ModelConfig, schema["properties"])]
    for name, sub in schema.get("$defs", {}).items():
        out.append((models[name], sub["properties"]))
    return out


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from ``root``, depth first, each once."""
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for field in model.model_fields.values():
            for sub in _submodels(field.annotation):
                visit(sub)

    visit(root)
    return seen


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _submodels(arg)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=False)
    return json.loads(json.dumps(value, default=str))


# -------------------------------------------------------------------------------------------- markdown

HEADER = """\
# Configuration reference

<!-- Generated from include/retrainer/config.py by `make config-docs`; do not edit by hand. -->

Every key of a model config (`include/models/<name>.yaml`), generated from the models that validate it,
so it cannot drift from the code. Unknown keys are errors that name the key and the file; check a file
with `retrainer validate-config FILE`. How to write one, with examples, and how to get completion and
validation in your editor: [Configuration](index.md).

**Types.** *duration*: a number and a unit, `H` hours, `D` days, `W` weeks (`8W`, `56D`, `12H`).
*section*: a nested mapping, described below its parent; a section whose type includes `null` can be
switched off with `null`. Bounds such as `≥ 1` are checked when the file is loaded.
"""


def render_markdown() -> str:
    """The configuration reference page: one table per section, in the order of the YAML file."""
    parts = [HEADER]
    for path, model, intro in _sections():
        anchor = _anchor(path)
        parts.append(f"\n## `{path}` {{#{anchor}}}\n" if path else "\n## Top level {#top-level}\n")
        doc = _prose(model.__doc__ or "")
        if intro:
            parts.append(f"\n{intro}\n")
        if doc:
            parts.append(f"\n{doc}\n")
        if path in SEE_ALSO:
            parts.append(f"\nSee also: [{_page_title(SEE_ALSO[path])}]({SEE_ALSO[path]}).\n")
        parts.append("\n| key | type | default | description |\n|---|---|---|---|\n")
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            key = f"{path}.{name}" if path else name
            parts.append(
                f"| `{_cell(name)}` | {_cell(_type(field, key))} | "
                f"{_cell(_default(field))} | {_cell(field.description or '')} |\n"
            )
    return "".join(parts)


def _sections() -> list[tuple[str, type[BaseModel], str]]:
    """(dotted path, model, note) for the top level and every nested section, depth first."""
    out: list[tuple[str, type[BaseModel], str]] = []

    def visit(path: str, model: type[BaseModel], note: str = "") -> None:
        out.append((path, model, note))
        for name, field in model.model_fields.items():
            key = f"{path}.{name}" if path else name
            origin = typing.get_origin(_strip_none(field.annotation))
            for sub in _submodels(field.annotation):
                if origin is list:
                    visit(f"{key}[]", sub, f"Each item of `{key}`.")
                elif origin is dict:
                    visit(f"{key}.<name>", sub, f"Each value of the mapping `{key}`.")
                else:
                    visit(key, sub)

    visit("", ModelConfig)
    return out


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _strip_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _type(field: FieldInfo, key: str) -> str:
    text = _annotation(field.annotation, key, field.metadata)
    bounds = [_bound(m) for m in field.metadata]
    return " ".join([text, *[b for b in bounds if b]])


def _annotation(annotation: Any, key: str, metadata: list[Any] | None = None) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _annotation(args[0], key, list(annotation.__metadata__))
    if origin in (Union, types.UnionType):
        return " or ".join(_annotation(a, key) for a in args)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        sub = args[0]
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            return f"list of [section](#{_anchor(key + '[]')})"
        return f"list of {_annotation(sub, key)}"
    if origin is dict:
        sub = args[1]
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            return f"mapping of name to [section](#{_anchor(key + '.<name>')})"
        return f"mapping of name to {_annotation(sub, key)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[section](#{_anchor(key)})"
    if annotation is type(None):
        return "`null`"
    if annotation is Any:
        return "any"
    pattern = next((getattr(m, "pattern", None) for m in metadata or [] if getattr(m, "pattern", None)), None)
    if annotation is str and pattern == DURATION_RE.pattern:
        return "duration"
    if annotation is str and pattern:
        return f"string matching `{pattern}`"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _bound(meta: Any) -> str:
    for cls, sign, attr in (
        (annotated_types.Ge, "≥", "ge"),
        (annotated_types.Gt, ">", "gt"),
        (annotated_types.Le, "≤", "le"),
        (annotated_types.Lt, "<", "lt"),
    ):
        if isinstance(meta, cls):
            return f"{sign} {getattr(meta, attr)}"
    return ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):  # a section that is on unless set to null, or always there
        return "on, with its defaults" if _optional(field.annotation) else "its defaults"
    if value is PydanticUndefined:  # pragma: no cover - required handled above
        return ""
    return f"`{_yaml(value)}`"


def _yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\\\\|", "\\|").replace("\n", " ")


def _anchor(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "top-level"


def _page_title(link: str) -> str:
    page = link.split("#")[0].removeprefix("../").removesuffix(".md").removesuffix("/index")
    return {
        "operating/data": "Data layout",
        "concepts": "Concepts",
        "promotion": "Promotion, rollback, reproduce",
        "operating/alerts": "Alerts",
        "backtest": "Backtest",
        "backtest/index": "Backtest",
        "scale": "Big batches and long histories",
        "how-to/bring-your-own-model": "Bring your own model",
    }.get(page, page)


# ------------------------------------------------------------------------------------------------ files


def expected_files() -> dict[str, str]:
    """The generated files under ``docs/configuration/`` and their content."""
    return {
        "reference.md": render_markdown(),
        SCHEMA_ID: json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrainer.config.reference", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the files under --dir")
    parser.add_argument("--dir", default=str(DOCS_DIR), help="where the generated files live")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    stale = []
    for name, text in expected_files().items():
        path = folder / name
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path))
    if stale:
        print(f"out of date: {', '.join(stale)} (run: make config-docs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
