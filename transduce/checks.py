"""Errors a user can cause, and the allowed values of config fields.

A :class:`Check` is declared beside a dataclass field with :func:`bounded`; the YAML
loader (:mod:`transduce.config`), the CLI's argparse types (:func:`arg_type`) and the
server's request models read the same declaration, so the three agree. This module
imports nothing of the package: every floor may use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class TransduceError(Exception):
    """An error a user can cause and fix; printed without a traceback by the CLI."""


class ConfigError(TransduceError):
    """A bad configuration key or value; ``key`` is its dotted name when one is at fault."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class LimitError(TransduceError):
    """An input past a size limit (pixels, seconds, decoding work): the server's 413."""


INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Check:
    """The values a field allows; declared beside the field with :func:`bounded`.

    One declaration serves the YAML loader (:func:`build_dataclass`), the CLI's
    argparse types (:func:`check_value`) and the server's request models, so the
    three agree. Numbers are always finite and integers fit in int64.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    pattern: str | None = None  # a regular expression the whole string must match
    what: str | None = None  # how to describe ``pattern`` to a user
    items: Check | None = None  # lists: the check of every item
    length: int | None = None  # lists: exactly this many items

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join('""' if c == "" else str(c) for c in self.choices)
        if self.pattern is not None:
            return self.what or f"text matching {self.pattern}"
        parts = []
        if self.items is not None or self.length is not None:
            if self.length is not None:
                parts.append(f"a list of {self.length} items")
            if self.items is not None:
                parts.append(f"each {self.items.describe()}")
            return ", ".join(parts)
        for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{op} {_fmt(bound)}")
        return "a finite number " + " and ".join(parts) if parts else "a finite number"

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else what is wrong with it."""
        if isinstance(value, dict):
            for key, item in value.items():
                why = self.items.problem(item) if self.items is not None else None
                if why:
                    return f"entry {key!r} ({item!r}) {why}"
            return None
        if isinstance(value, (list, tuple)):
            if self.length is not None and len(value) != self.length:
                return f"has {len(value)} items"
            if self.items is not None:
                for i, item in enumerate(value):
                    why = self.items.problem(item)
                    if why:
                        return f"item {i} ({item!r}) {why}"
            return None
        if self.choices is not None:
            return None if value in self.choices else "is not allowed"
        if self.pattern is not None:
            ok = isinstance(value, str) and re.fullmatch(self.pattern, value)
            return None if ok else "is not allowed"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "is not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "is not a finite number"
        if isinstance(value, int) and abs(value) > INT64_MAX:
            return "does not fit in a 64-bit integer"
        if (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        ):
            return "is out of range"
        return None


def _fmt(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


def bounded(default: Any, **check: Any) -> Any:
    """A dataclass field with a :class:`Check`: ``lr: float = bounded(5e-4, gt=0, le=10)``."""
    meta = {"check": Check(**check)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def field_check(cls: type, name: str) -> Check | None:
    """The :class:`Check` declared for field ``name`` of dataclass ``cls`` (None if none)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("check")
    raise KeyError(name)


def parse_checked(text: str, typ: type, check: Check | None, where: str = "") -> Any:
    """A command-line string -> ``typ`` (int, float or str), checked; ConfigError if not."""
    prefix = f"{where}: " if where else ""
    if typ is int:
        try:
            value: Any = int(text)
        except ValueError:
            raise ConfigError(f"{prefix}{text!r} is not an integer") from None
    elif typ is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{prefix}{text!r} is not a number") from None
    else:
        value = text
    _apply_check(check, value, where)
    return value


def _apply_check(check: Check | None, value: Any, where: str) -> None:
    prefix = f"{where}: " if where else ""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{prefix}{value!r} is not a finite number", where)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        raise ConfigError(f"{prefix}{value} does not fit in a 64-bit integer", where)
    if check is None or value is None:
        return
    why = check.problem(value)
    if why:
        raise ConfigError(f"{prefix}{value!r} {why}; expected {check.describe()}", where)


def arg_type(typ: type, check: Check | None) -> Callable[[str], Any]:
    """An argparse ``type=``: parse and check against ``check``; a bad value is one
    ``error: argument --x: ...`` line and exit status 2."""

    def parse(text: str) -> Any:
        try:
            return parse_checked(text, typ, check)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = typ.__name__  # argparse names the type in some messages
    return parse


def field_arg_type(cls: type, name: str) -> Callable[[str], Any]:
    """The argparse type of dataclass field ``cls.name``: the bounds declared on it."""
    return arg_type(typing.get_type_hints(cls)[name], field_check(cls, name))
