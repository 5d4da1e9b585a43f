"""One small registry of named things, shared by every registry in sslzoo.

Methods, losses, presets, text architectures, datasets and Hub formats are each found by a name that
a recipe, a config or the CLI gives. Writing that lookup once means every registry refuses a second
registration under a taken name (a copy-pasted decorator would otherwise silently replace the first
one, and which one wins would depend on import order), and every unknown name gets the same
message, listing the names that would have worked.

Registration happens by import: the module that owns a registry imports every module that registers
into it, plainly, so a broken module fails loudly instead of leaving its names missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from zoo.errors import UnknownNameError

T = TypeVar("T")


def _describe(origin: object) -> str:
    """A class or function as ``module.qualname`` (so both sides of a clash can be found); else its repr."""
    if inspect.isclass(origin) or inspect.isroutine(origin):
        return f"{origin.__module__}.{origin.__qualname__}"
    return repr(origin)


class NameRegistry(Generic[T]):
    """Names → values of one kind, filled by decorators at import time.

    Args:
        kind: What the names name (``"method"``, ``"loss"``...), for error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._values: dict[str, T] = {}
        self._origins: dict[str, object] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers what it decorates under ``name`` and returns it unchanged."""

        def decorate(value: T) -> T:
            self.add(name, value)
            return value

        return decorate

    def add(self, name: str, value: T, *, origin: object = None) -> None:
        """Register ``value`` under ``name``; a name taken already is a :class:`ValueError` naming both.

        Args:
            name: The name users will give.
            value: What :meth:`get` returns for it.
            origin: What defined ``value``, named if the name clashes; ``value`` itself by default.
                Registries that store something built from the decorated function (a dataset spec
                around its builder) pass the function, which is what a reader needs to find.
        """
        where = _describe(value if origin is None else origin)
        if name in self._values:
            raise ValueError(f"{self.kind} {name!r} is registered twice: by {self._origins[name]} and by {where}")
        self._values[name] = value
        self._origins[name] = where

    def get(self, name: str, *, hint: str = "") -> T:
        """The value registered as ``name``.

        Args:
            name: A registered name.
            hint: What else the caller would have accepted (another form of input), added to the
                message of an unknown name.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists every registered name.
        """
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {known}" + (f"; {hint}" if hint else "")
            ) from None

    def names(self) -> list[str]:
        """Every registered name, sorted, for listings and messages that read the same on every run."""
        return sorted(self._values)

    def in_registration_order(self) -> list[tuple[str, T]]:
        """``(name, value)`` pairs in the order they were registered, for registries where order means preference."""
        return list(self._values.items())

    def __contains__(self, name: object) -> bool:
        return name in self._values
