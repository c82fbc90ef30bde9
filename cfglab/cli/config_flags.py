"""Command-line flags generated from a pydantic config: one `--field-name` per field.

A field's `description` is its help line and its type picks the flag's kind: a choice for a
Literal or an Enum, `--x/--no-x` for a bool, a number or text otherwise. Any other type (a list,
a mapping) takes YAML text. Every flag defaults to None, so `given_flags` can tell what the user
typed from what the config file (or the model's default) says.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

import typer
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cfglab.errors import CfglabError

_SIMPLE = (bool, int, float, str)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def config_parameters(
    model: type[BaseModel], panels: dict[str, str] | None = None
) -> list[inspect.Parameter]:
    """One keyword parameter per field of `model`, each a typer option defaulting to None;
    `panels` puts a field's flag under a heading of `--help` (field name → heading)."""
    return [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_option(name, info, (panels or {}).get(name)),
            annotation=_annotation(info.annotation),
        )
        for name, info in model.model_fields.items()
    ]


def given_flags(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """The fields the user gave as flags (not None), YAML-typed ones parsed."""
    given = {}
    for name, info in model.model_fields.items():
        value = values.get(name)
        if value is None:
            continue
        if _flag_type(info.annotation) is str and not _is_text(info.annotation):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise CfglabError(f"{flag_name(name)}: not valid YAML: {err}") from None
        given[name] = value.value if isinstance(value, enum.Enum) else value
    return given


def with_config_flags(
    model: type[BaseModel],
    command: Callable[..., None],
    panels: dict[str, str] | None = None,
) -> Callable[..., None]:
    """`command` with `model`'s flags added after its own parameters (it receives them as
    keyword arguments; its own parameters must not share their names); `panels` as in
    `config_parameters`."""
    hints = typing.get_type_hints(command)
    own = [
        p.replace(annotation=hints[p.name])
        for p in inspect.signature(command).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    taken = {p.name for p in own}
    extra = [p for p in config_parameters(model, panels) if p.name not in taken]
    if panels:
        # `--help` lists headings in the order their first flag comes: the config's groups
        # in `panels`' order, then the command's own options (keyword-only from here on)
        order = list(dict.fromkeys(panels.values()))
        extra.sort(key=lambda p: order.index(panels[p.name]) if p.name in panels else len(order))
        extra += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        own = []

    def wrapped(**kwargs: Any) -> None:
        command(**kwargs)

    wrapped.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    wrapped.__annotations__ = {p.name: p.annotation for p in own + extra}
    wrapped.__doc__ = command.__doc__
    wrapped.__name__ = command.__name__
    return wrapped


def _option(name: str, info: FieldInfo, panel: str | None = None) -> Any:
    annotation = _strip_optional(info.annotation)
    decls = [flag_name(name)]
    if annotation is bool:
        decls = [f"{flag_name(name)}/--no-{name.replace('_', '-')}"]
    help_text = (info.description or "").rstrip()
    if not info.is_required():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, enum.Enum):
            default = default.value
        if default is not None:
            help_text += f" (default: {default})"
    if _flag_type(info.annotation) is str and not _is_text(info.annotation):
        help_text += " (YAML)"
    return typer.Option(None, *decls, help=help_text, show_default=False, rich_help_panel=panel)


def _annotation(annotation: Any) -> Any:
    """What typer sees: the Literal or Enum of a choice, else the flag's value type; optional."""
    inner = _strip_optional(annotation)
    shown = inner if _choices(inner) is not None else _flag_type(annotation)
    return shown | None


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    return None


def _flag_type(annotation: Any) -> type:
    """The Python type of the flag's value: bool, int, float or str (choices and YAML: str)."""
    inner = _strip_optional(annotation)
    if inner in _SIMPLE:
        return inner
    return str


def _is_text(annotation: Any) -> bool:
    """Whether the flag's text is the value itself (str, a choice) rather than YAML."""
    inner = _strip_optional(annotation)
    return inner is str or _choices(inner) is not None
