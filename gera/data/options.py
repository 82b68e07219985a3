"""Task options a visitor of a public app may set: a short allow-list per task, with ranges.

The CLI's ``parse_task_options`` hands anything to a task's constructor, and that is right for
someone on their own machine. On a public app each free option is a hole: a folder option reads
the server's files, a caption template such as ``{:>999999999}`` makes ``str.format`` build a
gigabyte string, and a huge count makes a task generate data for hours. So every task class
declares ``public_options``: the few small numbers and fixed choices that are safe, each with its
range, and ``parse_public_options`` accepts nothing else. Paths and templates are never on a list.

Numbers are plain ASCII digits: ``int()`` would also take ``2_000``, ``"٣"`` (Arabic-Indic three)
or ``" 3 "``, and ``float()`` takes ``nan`` and ``1e400``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Mapping, Union

from gera.errors import GeraError

MAX_OPTIONS_CHARS = 500
_KEY = re.compile(r"[a-z_]{1,40}")
_WHOLE = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?|\.[0-9]{1,6}")


@dataclass(frozen=True)
class WholeNumber:
    """A whole number from ``low`` to ``high`` (both included)."""

    low: int
    high: int
    noun: ClassVar[str] = "a whole number"
    pattern: ClassVar[re.Pattern] = _WHOLE
    kind: ClassVar[type] = int

    def describe(self) -> str:
        return f"{self.noun} from {self.low:g} to {self.high:g}"

    def parse(self, text: str):
        if not self.pattern.fullmatch(text):
            return None
        value = self.kind(text)
        return value if self.low <= value <= self.high else None


@dataclass(frozen=True)
class DecimalNumber(WholeNumber):
    """A decimal number from ``low`` to ``high`` (both included), written like ``0.25``."""

    low: float
    high: float
    noun: ClassVar[str] = "a number"
    pattern: ClassVar[re.Pattern] = _DECIMAL
    kind: ClassVar[type] = float


@dataclass(frozen=True)
class Choice:
    """One of ``values``; with ``several``, one or more joined by ``+`` (given as a tuple, in
    the order of ``values``)."""

    values: tuple[str, ...]
    several: bool = False

    def describe(self) -> str:
        listed = ", ".join(self.values)
        return f"one or more of {listed}, joined by +" if self.several else f"one of {listed}"

    def parse(self, text: str) -> str | tuple[str, ...] | None:
        if not self.several:
            return text if text in self.values else None
        picked = text.split("+")
        if len(set(picked)) != len(picked) or not set(picked) <= set(self.values):
            return None
        return tuple(v for v in self.values if v in picked)


Option = Union[WholeNumber, DecimalNumber, Choice]


def describe_options(task_name: str, allowed: Mapping[str, Option]) -> str:
    """One sentence saying what ``allowed`` lets a visitor set for ``task_name``."""
    if not allowed:
        return f"Task '{task_name}' takes no options here."
    listed = "; ".join(f"{key} ({option.describe()})" for key, option in allowed.items())
    return f"Task '{task_name}' accepts: {listed}."


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def parse_public_options(task_name: str, text: str, allowed: Mapping[str, Option]) -> dict:
    """``"n_test=2000, seed=3"`` → ``{"n_test": 2000, "seed": 3}``, or one ``GeraError`` that
    names the offending option and lists what ``allowed`` accepts. Blank text → ``{}``."""
    text = text or ""
    help_text = describe_options(task_name, allowed)
    if len(text) > MAX_OPTIONS_CHARS:
        raise GeraError(f"The task options are {len(text)} characters long; at most "
                        f"{MAX_OPTIONS_CHARS} are read. {help_text}")
    options: dict = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not _KEY.fullmatch(key):
            raise GeraError(f"Task option {_shown(part)} must look like name=value, e.g. "
                            f"seed=3. {help_text}")
        if key not in allowed:
            raise GeraError(f"Task option {_shown(key)} cannot be set here. {help_text}")
        if key in options:
            raise GeraError(f"Task option '{key}' is given twice. {help_text}")
        parsed = allowed[key].parse(value)
        if parsed is None:
            raise GeraError(f"Task option {key}={_shown(value)} is invalid: {key} must be "
                            f"{allowed[key].describe()}.")
        options[key] = parsed
    return options
