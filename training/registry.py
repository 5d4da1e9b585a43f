"""The registry of training methods: ``@register_method("dino")`` makes ``--method dino`` work."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from zoo.errors import UnknownNameError

MethodFactory = Callable[..., Any]
_METHODS: dict[str, MethodFactory] = {}
_METHOD_MODULES = ("simclr", "mocov3", "byol", "simsiam", "dino", "mae", "ijepa", "clip")


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Register a Method class (or factory) under ``name``."""

    def wrap(factory: MethodFactory) -> MethodFactory:
        _METHODS[name] = factory
        return factory

    return wrap


def _import_all() -> None:
    for module in _METHOD_MODULES:
        try:
            importlib.import_module(f"training.methods.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"training.methods.{module}":
                raise


def list_methods() -> list[str]:
    """Names of every registered method."""
    _import_all()
    return sorted(_METHODS)


def get_method(name: str) -> MethodFactory:
    """The factory registered as ``name``; an unknown name lists the known ones."""
    _import_all()
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownNameError(f"unknown method {name!r}; methods: {', '.join(sorted(_METHODS))}") from None
