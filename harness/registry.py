"""Thin registries: name -> factory, with a one-line description and the factory's parameters.

Built-in entries register themselves with a decorator when their package is imported; other packages add
their own through the entry-point groups `harness.tasks`, `harness.backbones` and `harness.samplers`. An entry
point may name a module (importing it registers its entries) or a factory (registered under the entry-point name).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import numbers
import os
import typing
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from harness.errors import HarnessError, UnknownNameError


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    help: str = ""
    choices: tuple = ()
    value_type: type | None = None  # int, float, bool or str (the annotation's, else the default's); None: any

    def check(self, value, owner: str):
        """The value this option takes: one of its type (a number given to a text option becomes its text:
        `split=2024` parses as a number), else a HarnessError naming `owner` ("task 'needle'") and the option."""
        kind = self.value_type
        if kind is None or value is None:
            return value
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if kind is str and number:
            return str(value)
        ok = {int: isinstance(value, numbers.Integral) and not isinstance(value, bool), float: number,
              bool: isinstance(value, bool), str: isinstance(value, (str, os.PathLike))}[kind]
        if not ok:
            raise HarnessError(f"{owner}: option {self.name} must be {_WORDS[kind]}, got {value!r}")
        return value


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable
    description: str
    params: tuple[Param, ...] = field(default=())
    source: str = "builtin"
    kind: str = ""  # task, backbone or sampler (for messages)

    def create(self, **kwargs):
        known = {p.name for p in self.params}
        unknown = sorted(set(kwargs) - known)
        if unknown and not _takes_var_kwargs(self.factory):
            raise HarnessError(
                f"unknown option {unknown[0]!r} for {self.name!r} (options: {', '.join(sorted(known)) or 'none'})")
        owner = f"{self.kind} {self.name!r}".strip()
        for p in self.params:
            if p.name not in kwargs:
                continue
            value = kwargs[p.name] = p.check(kwargs[p.name], owner)
            if p.choices and value not in p.choices:
                choices = list(map(str, p.choices))
                close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
                raise HarnessError(f"option {p.name}={value!r} of {owner} must be one of {', '.join(choices)}"
                                   + (f"; did you mean {close[0]}?" if close else ""))
        return self.factory(**kwargs)


def _takes_var_kwargs(fn) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_SCALARS = {t.__name__: t for t in _WORDS}


def _value_type(annotation, default):
    """int, float, bool or str from an annotation (a type or, under `from __future__ import annotations`, its text;
    `| None` allowed) or else from a default; None (anything) for other annotations and a None default."""
    if isinstance(annotation, str):
        names = [a.strip() for a in annotation.replace("Optional[", "").rstrip("]").split("|")]
        names = [n for n in names if n != "None"]
        return _SCALARS.get(names[0]) if len(names) == 1 else None
    if annotation is not inspect.Parameter.empty:
        args = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
        return args[0] if len(args) == 1 and args[0] in _WORDS else None
    return type(default) if type(default) in _WORDS else None


def _signature_params(fn, helps: dict, choices: dict) -> tuple[Param, ...]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name == "self":
            continue
        default = None if p.default is p.empty else p.default
        out.append(Param(p.name, default, helps.get(p.name, ""), tuple(choices.get(p.name, ())),
                         _value_type(p.annotation, default)))
    return tuple(out)


class Registry:
    def __init__(self, kind: str, builtin_package: str):
        self.kind = kind
        self.group = f"harness.{kind}s"
        self._builtin_package = builtin_package
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, *, description: str, help: dict | None = None, choices: dict | None = None):
        """Decorator: register `fn` (a class or function) under `name`."""

        def wrap(fn):
            self.add(Entry(name, fn, description, _signature_params(fn, help or {}, choices or {}),
                           source=getattr(fn, "__module__", "builtin"), kind=self.kind))
            return fn

        return wrap

    def add(self, entry: Entry) -> None:
        old = self._entries.get(entry.name)
        if old is not None and old.factory is not entry.factory:
            raise HarnessError(f"{self.kind} {entry.name!r} is registered twice ({old.source}, {entry.source})")
        self._entries[entry.name] = entry

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module(self._builtin_package)
        for ep in entry_points(group=self.group):
            obj = ep.load()
            if callable(obj) and not inspect.ismodule(obj) and ep.name not in self._entries:
                doc = (inspect.getdoc(obj) or "").strip().splitlines()
                self.add(Entry(ep.name, obj, doc[0] if doc else "", _signature_params(obj, {}, {}), ep.value,
                               self.kind))

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def get(self, name: str) -> Entry:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def create(self, name: str, **kwargs):
        return self.get(name).create(**kwargs)


TASKS = Registry("task", "tasks")
BACKBONES = Registry("backbone", "backbones")
SAMPLERS = Registry("sampler", "samplers")
REGISTRIES = {"tasks": TASKS, "backbones": BACKBONES, "samplers": SAMPLERS}
