"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

Layout of ``RUN_DIR/checkpoints/step_000120/``::

    model.safetensors      the method's state_dict: backbone, heads, EMA teacher, centres (a method's
                           non-tensor ``get_extra_state()``, if any, goes to state.json: keep it JSON-ready)
    optimizer.safetensors  optimiser state tensors (AdamW moments, step counts)
    rng_rank{R}.safetensors / rng_rank{R}.json   each process's torch/CUDA/numpy/python RNG states
    state.json             step, data position, optimiser structure, scaler and trainer state

A checkpoint is written into a hidden folder and renamed into place, then ``latest.json`` points at
it, so a process killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from training.distributed import barrier
from zoo.errors import ConfigError

LATEST = "latest.json"
STATE = "state.json"


def _for_safetensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # Not cloned: tensors that share storage (a module registered twice) are refused by safetensors,
    # and should be, as the checkpoint would hold those weights twice.
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser's state_dict into tensors (for safetensors) and a JSON structure naming them."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for index, values in sd["state"].items():
        entry: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, Tensor):
                name = f"state.{index}.{key}"
                tensors[name] = value
                entry[key] = {"tensor": name}
            else:
                entry[key] = value
        state[str(index)] = entry
    # A snapshot: the optimiser updates its state in place after this returns.
    snapshot = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    return snapshot, {"state": state, "param_groups": sd["param_groups"]}


def optimizer_from_files(tensors: dict[str, Tensor], structure: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the state_dict that :func:`optimizer_to_files` split."""
    state = {
        int(index): {key: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
                     for key, v in values.items()}
        for index, values in structure["state"].items()
    }
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in structure["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """This process's RNG states: torch (CPU and CUDA) as tensors, numpy and python as JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = cuda_state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    tensors["numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [version, list(py_state), py_gauss]}
    return tensors, meta


def set_rng_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = meta["python"]
    random.setstate((version, tuple(py_state), py_gauss))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, method: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], *, rank: int = 0, keep: int = 2) -> Path | None:
    """Write a checkpoint for ``step``; every rank calls it (each saves its RNG), rank 0 the rest.

    Args:
        run_dir: The run's folder; checkpoints go under ``checkpoints/``.
        step: Optimiser steps completed.
        method: The method (unwrapped from DDP).
        optimizer: Its optimiser.
        state: JSON-ready trainer state (data position, scaler, monitors).
        rank: This process's rank.
        keep: How many checkpoints to keep (older ones are deleted).

    Returns:
        The checkpoint folder on rank 0, None elsewhere.
    """
    root = run_dir / "checkpoints"
    final, tmp = root / f"step_{step:07d}", root / f".tmp-step_{step:07d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    rng_tensors, rng_meta = rng_state()
    save_file(rng_tensors, str(tmp / f"rng_rank{rank}.safetensors"))
    _write_json(tmp / f"rng_rank{rank}.json", rng_meta)
    if rank == 0:
        model_state = method.state_dict()
        tensors = {k: v for k, v in model_state.items() if isinstance(v, Tensor)}
        extra = {k: v for k, v in model_state.items() if not isinstance(v, Tensor)}  # get_extra_state()
        save_file(_for_safetensors(tensors), str(tmp / "model.safetensors"))
        opt_tensors, opt_structure = optimizer_to_files(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        _write_json(tmp / STATE, {**state, "step": step, "optimizer": opt_structure, "model_extra": extra})
    barrier()
    if rank != 0:
        return None
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_json(root / LATEST, {"step": step, "path": final.name})
    for old in sorted(root.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``latest.json`` points at, or None when the run has no checkpoint yet."""
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / json.loads(pointer.read_text())["path"]
    if not (folder / STATE).is_file():
        raise ConfigError(f"{pointer} points at {folder}, which is not a complete checkpoint")
    return folder


def load_checkpoint(folder: Path, method: nn.Module, optimizer: torch.optim.Optimizer,
                    *, rank: int = 0) -> dict[str, Any]:
    """Restore method, optimiser and this rank's RNG from ``folder``; returns the trainer state."""
    state = json.loads((folder / STATE).read_text())
    model_state: dict[str, Any] = {**load_file(str(folder / "model.safetensors")), **state.pop("model_extra", {})}
    method.load_state_dict(model_state, strict=True)
    structure = state.pop("optimizer")
    optimizer.load_state_dict(optimizer_from_files(load_file(str(folder / "optimizer.safetensors")), structure))
    rng_file = folder / f"rng_rank{rank}.safetensors"
    if not rng_file.is_file():
        raise ConfigError(f"{folder} has no RNG state for rank {rank}: resume with the same number of processes")
    set_rng_state(load_file(str(rng_file)), json.loads((folder / f"rng_rank{rank}.json").read_text()))
    return state
