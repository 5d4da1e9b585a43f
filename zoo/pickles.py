"""Pickle checkpoints: how every loader recognises one, and the one error that refuses it.

Unpickling runs arbitrary code, so sslzoo never does it; a user who points any loader (a folder, a
file, a Hub repo, an open_clip weights file) at a pickle gets an error that says how to convert it
once, where they trust it. One suffix list serves all of them, so a format refused in one place is
refused in every place.
"""

from __future__ import annotations

from pathlib import Path

from zoo.errors import UnsafeWeightsError

#: Suffixes of pickle-based checkpoints (PyTorch, Lightning, legacy ``torch.save`` tar archives, plain pickles).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")
CONVERT_HINT = "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')"


def is_pickle(name: str | Path) -> bool:
    """Whether a file name (a path, or a file listed in a Hub repo) is a pickle checkpoint."""
    return str(name).endswith(PICKLE_SUFFIXES)


def pickle_refusal(path: str | Path) -> UnsafeWeightsError:
    """The error for a local pickle checkpoint."""
    return UnsafeWeightsError(
        f"{path} is a pickle-format checkpoint; sslzoo loads safetensors only, because unpickling runs arbitrary "
        f"code. Convert it once where you trust it: {CONVERT_HINT}"
    )
