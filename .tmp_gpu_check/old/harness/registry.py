"""Thin registries: name -> factory, with a one-line description and the factory's parameters.

Built-in entries register themselves with a decorator when their package is imported; other packages add
their own through the entry-point groups `harness.tasks`, `harness.backbones` and `harness.samplers`. An entry
point may name a module (importing it registers its entries) or a factory (registered under the entry-point name).
"""
from __future__ import annotations

import importlib
import inspect
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


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable
    description: str
    params: tuple[Param, ...] = field(default=())
    source: str = "builtin"

    def create(self, **kwargs):
        known = {p.name for p in self.params}
        unknown = sorted(set(kwargs) - known)
        if unknown and not _takes_var_kwargs(self.factory):
            raise HarnessError(
                f"unknown option {unknown[0]!r} for {self.name!r} (options: {', '.join(sorted(known)) or 'none'})")
        for p in self.params:
            if p.choices and p.name in kwargs and kwargs[p.name] not in p.choices:
                raise HarnessError(f"option {p.name}={kwargs[p.name]!r} of {self.name!r} must be one of "
                                   f"{', '.join(map(str, p.choices))}")
        return self.factory(**kwargs)


def _takes_var_kwargs(fn) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _signature_params(fn, helps: dict, choices: dict) -> tuple[Param, ...]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name == "self":
            continue
        default = None if p.default is p.empty else p.default
        out.append(Param(p.name, default, helps.get(p.name, ""), tuple(choices.get(p.name, ()))))
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
                           source=getattr(fn, "__module__", "builtin")))
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
                self.add(Entry(ep.name, obj, doc[0] if doc else "", _signature_params(obj, {}, {}), ep.value))

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
