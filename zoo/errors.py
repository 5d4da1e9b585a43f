"""Exceptions raised by sslzoo.

Every error a user can trigger with bad input derives from :class:`SslzooError`, so the CLI and the
service can turn it into a clear message (or an HTTP 4xx) instead of a traceback.
"""

from __future__ import annotations


class SslzooError(Exception):
    """Base class of every error caused by input the user can fix."""


class RefError(SslzooError, ValueError):
    """A model reference that is malformed or names nothing in the registry."""


class ManifestError(SslzooError):
    """A registry entry whose files do not match their recorded sha256 and size."""


class UnsafeWeightsError(SslzooError):
    """Weights offered in a format that can execute code on load (pickle)."""


class ConfigError(SslzooError, ValueError):
    """A config.json or recipe that cannot describe a model."""


class BackendOptionError(ConfigError):
    """An option a ``zoo.load`` backend does not take, or a value it cannot use (the message names both)."""


class UnknownNameError(SslzooError, KeyError):
    """A name missing from one of the registries (architectures, methods, datasets, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetNotAvailableError(SslzooError):
    """A dataset whose source files (a Debian package, say) are not installed on this machine."""


class DataError(SslzooError, ValueError):
    """Input data that cannot be used: an empty folder, no readable images, bad captions."""


class MissingExtraError(SslzooError, ImportError):
    """A feature whose optional dependencies are not installed; the message names the pip extra to add."""
