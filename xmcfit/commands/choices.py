"""Choice types for the command line: shell completion offers their values and click refuses any other
value in one line. Built from the library's own lists (the plan schema's Literal types), so the two
never drift apart."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum, StrEnum
from typing import Any, get_args


def choice_enum(name: str, values: Any) -> type[StrEnum]:
    """A StrEnum whose members are `values` (a Literal type or an iterable of strings); typer turns it into
    a click Choice: `[a|b|c]` in the help, the values in completion."""
    names = get_args(values) or tuple(values)
    return StrEnum(name, [(v, v) for v in names])


def value(member: Enum | None) -> Any:
    """The plain value of a choice, or None, for the library (which takes strings)."""
    return None if member is None else member.value


def plain(given: Any) -> Any:
    """A choice's plain value, any other option's value as it is (numbers, flags, None)."""
    return given.value if isinstance(given, Enum) else given


def completer(values: Iterable[str]) -> Callable[[str], list[str]]:
    """Completion for an option whose values are open-ended (`--device cuda:N`, split aliases): offers
    `values` starting with what was typed; validation stays with the library."""
    options = tuple(values)

    def complete(incomplete: str) -> list[str]:
        return [v for v in options if v.startswith(incomplete)]

    return complete
