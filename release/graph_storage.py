"""Shipped ONNX graphs stored as compactly as the shipped weights: large fp32 initializers kept as fp16.

An entry shipped with fp16 storage keeps its torch weights as fp16; its exported graph, stored as is,
would cost twice those weights and may not fit the built-in budget. Each large fp32 initializer becomes
an fp16 initializer and a ``Cast`` to fp32 that ONNX Runtime's constant folding evaluates once when the
session is created, so the graph still computes in fp32 on fp32 weights. The graph's initializers are the
export's (batch norms folded into convolutions), not the torch tensors, so they round differently:
:mod:`release.ship` measures the graph against the source's embeddings and gates it like the fp16 weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

FP16_SUFFIX = ".fp16"


def fp16_initializer_graph(path: Path, stored_as_fp16: Callable[[np.ndarray], bool]) -> bytes:
    """The graph at ``path`` with every fp32 initializer that ``stored_as_fp16`` accepts stored as fp16.

    ``stored_as_fp16`` is :mod:`release.ship`'s rule for the weights. Initializers that are also graph
    inputs (overridable at run time) stay fp32.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inputs = {value.name for value in graph.input}
    casts, kept = [], []
    for tensor in graph.initializer:
        if tensor.data_type != TensorProto.FLOAT or tensor.name in inputs:
            kept.append(tensor)
            continue
        values = numpy_helper.to_array(tensor)
        if not stored_as_fp16(values):
            kept.append(tensor)
            continue
        stored = tensor.name + FP16_SUFFIX
        kept.append(numpy_helper.from_array(values.astype(np.float16), stored))
        casts.append(helper.make_node("Cast", [stored], [tensor.name], to=TensorProto.FLOAT,
                                      name=f"{tensor.name}/to_fp32"))
    if not casts:
        return path.read_bytes()
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()
