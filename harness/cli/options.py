"""One way of turning a config dataclass into command-line options, and the parsed options back into the dataclass.

A field `batch_size` becomes `--batch-size`; a dict field (`task_args`) becomes a repeatable `--task-arg KEY=VALUE`
and a list field (`samplers`) a repeatable `--sampler`, both named by the singular. The value type comes from the
annotation (int, float, text; a bool is a flag, `--retry-errors`, that also takes true/false, so that
`--progress false` turns off what defaults to on). Every option defaults to None, "not given", so that reading back
changes only what the command line names: a config file's values (RunConfig) or the class defaults stay otherwise.
Help text comes from `help=` or from the field's metadata (`field(metadata={"help": ...})`); `{default}` in it is
replaced by the field's default.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _bool(text: str) -> bool:
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _kind(cls, f: dataclasses.Field):
    """The field's value type without Optional: int, float, bool, str, dict, list or tuple."""
    hint = typing.get_type_hints(cls).get(f.name, str)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def dest(cls, f: dataclasses.Field) -> str:
    """The argparse destination of a field: its name, or its singular for a repeatable (dict or list) option."""
    repeated = _kind(cls, f) in (dict, list) and f.name.endswith("s")
    return f.name[:-1] if repeated else f.name


def default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def shown(value) -> str:
    """A default as help text shows it: lists comma-separated, dicts as key=value."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def add_options(parser, cls, names=None, help: dict | None = None, **extra: dict) -> None:
    """One option per named field of dataclass `cls` (all fields when `names` is None), in that order.
    `help[name]` overrides the field's metadata help; `extra[name]` adds argparse arguments (choices, metavar,
    action, required) to one field's option. A field without a default is a required option."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    for name in names if names is not None else list(by_name):
        f = by_name[name]
        kind = _kind(cls, f)
        text = (help or {}).get(name, f.metadata.get("help"))
        kwargs = {"dest": dest(cls, f), "default": None}
        if text is not None:
            kwargs["help"] = text.replace("{default}", shown(default_of(f)))
        if kind in (dict, list):
            kwargs.update(action="append", metavar="KEY=VALUE" if kind is dict else None)
        elif kind is bool:  # a flag (`--retry-errors`) that also takes a value (`--progress false`)
            kwargs.update(type=_bool, nargs="?", const=True, metavar="BOOL")
        elif kind in (int, float):
            kwargs["type"] = kind
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs["required"] = True
        kwargs.update(extra.get(name, {}))
        if kwargs.get("metavar") is None:
            kwargs.pop("metavar", None)
        parser.add_argument("--" + kwargs["dest"].replace("_", "-"), **kwargs)


def read_options(args, cls, base=None):
    """The dataclass with the options given on the command line: over `base` (dicts are merged into the base's)
    or, without a base, over the class defaults (a given dict replaces the default one)."""
    from harness.config import parse_assignments

    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, dest(cls, f), None)
        if value is None:
            continue
        kind = _kind(cls, f)
        if kind is dict:
            value = parse_assignments(value, "--" + dest(cls, f).replace("_", "-"))
            value = {**getattr(base, f.name), **value} if base is not None else value
        elif kind is list and isinstance(value, str):  # a single-valued option of a list field
            value = [value]
        values[f.name] = value
    return dataclasses.replace(base, **values) if base is not None else cls(**values)
