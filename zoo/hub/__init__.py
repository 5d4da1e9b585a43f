"""Hugging Face Hub: registry entries to and from Hub model repos, and the checkpoints worth pulling.

- :mod:`zoo.hub.transfer` — :func:`push` and :func:`pull` through ``huggingface_hub`` (cache, offline
  mode, tokens), every download checked against the Hub's hashes;
- :mod:`zoo.hub.formats` — the repo layouts a pull understands (sslzoo, timm, open_clip, transformers) and
  how each becomes an entry;
- :mod:`zoo.hub.openclip` — open_clip models converted to :class:`zoo.clip.ClipModel`;
- :mod:`zoo.hub.ijepa` — I-JEPA's transformers checkpoints converted to timm ViTs;
- :mod:`zoo.hub.catalogue` — recommended real checkpoints, as data.

The package stands on the registry and encoders and under the :mod:`zoo.api` façade: it resolves
references and saves entries through :class:`zoo.registry.Registry`, never through ``zoo`` itself.
"""

from __future__ import annotations

from zoo.hub.transfer import HubError, PushResult, entry_name, parse_target, pull, push, resolve_endpoint

__all__ = ["HubError", "PushResult", "entry_name", "parse_target", "pull", "push", "resolve_endpoint"]
