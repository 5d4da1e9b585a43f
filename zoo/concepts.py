"""A projection head that also speaks through the tower's own classifier: the ConSE read-out.

A CLIP whose image side is a *linear* projection of pooled features scores a label by a bilinear
form of features and text: however it is fitted, it cannot say "these features are 90 % *tabby cat*,
so the answer is the caption nearest *tabby cat*". An ImageNet tower's classifier already says the
first half for photographs (EfficientNet-Lite0: 75 % top-1), and its class names are text. ConSE
(Norouzi et al., 2014) joins the two: the image's semantic embedding is the convex combination of its
``top_k`` classes' name embeddings, weighted by the classifier's probabilities.

:class:`ConceptHead` keeps the fitted projection for what the classifier does not know (drawings,
emoji, garments on black) and leans on the class names as far as the classifier is sure: with ``c``
the gate's reading (the top class probability, or how far the top classes agree on one meaning:
:class:`~zoo.config.ConceptHeadConfig`) and ``w = clamp((c - gate) / (1 - gate), 0, 1)``, the image vector is
``(1 - w) · unit(projection) + w · unit(ConSE)``. A confident photograph answers by its class names; an
image no ImageNet class fits keeps the fitted projection. The gate exists because the classifier is
also confidently wrong on some drawings; it is chosen on validation splits of the training data
(``benchmarks/concept_gate.py``). ``top_k`` is the paper's 10, the class embeddings are the text
tower's embeddings of the class names.

It takes the place of timm's linear head (``classifier`` of an EfficientNet, ``fc`` of a ResNet: the
model's ``pretrained_cfg["classifier"]``), which is the projection of every sslzoo CNN, so the weights
stay in the backbone's ``state_dict`` (``classifier.projection.*``, ``classifier.classes.*``,
``classifier.class_embeddings``) and ONNX exports it with the rest of the graph (``TopK`` and a gather).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.config import ConceptHeadConfig
from zoo.errors import ConfigError

GateRead = Callable[[Tensor, Tensor], Tensor]
#: ``(top-k probabilities [B, k], their weighted name sum [B, D]) → [B, 1]``, by ``ConceptHeadConfig.gate_on``.
GATE_READS: dict[str, GateRead] = {
    "top1": lambda top, mixed: top[:, :1],
    "agreement": lambda top, mixed: mixed.norm(dim=-1, keepdim=True),
}


class ConceptHead(nn.Module):
    """``(1 - w) · unit(W x) + w · unit(Σ_topk p_k e_k)``, ``p = softmax(classifier(x))``, ``w`` the gated statistic.

    With ``sketch_dims`` (dimensions no text writes into), the names' term is scaled to the length of
    ``unit(W x)`` outside them, so the mix ranks texts as the head without a sketch would.
    """

    def __init__(self, projection: nn.Linear, config: ConceptHeadConfig) -> None:
        super().__init__()
        self.projection = projection
        self.classes = nn.Linear(projection.in_features, config.classes)
        self.class_embeddings = nn.Parameter(torch.zeros(config.classes, projection.out_features))
        self.top_k = config.top_k
        self.gate = config.gate
        self.gate_on = config.gate_on
        self.sketch_dims = config.sketch_dims

    @property
    def out_features(self) -> int:
        """Width of the vectors it returns (the projection's)."""
        return int(self.projection.out_features)

    def concepts(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled features → (the gate's reading ``[B, 1]``, the probability-weighted name sum ``[B, D]``)."""
        top, index = torch.softmax(self.classes(features), dim=-1).topk(self.top_k, dim=-1)
        mixed = (top.unsqueeze(-1) * self.class_embeddings[index]).sum(dim=1)
        return GATE_READS[self.gate_on](top, mixed), mixed

    def forward(self, features: Tensor) -> Tensor:
        """Pooled features ``[B, F]`` → ``[B, D]`` (unnormalised: the encoder normalises)."""
        fitted = F.normalize(self.projection(features), dim=-1)
        reading, mixed = self.concepts(features)
        names = F.normalize(mixed, dim=-1)
        weight = ((reading - self.gate) / (1.0 - self.gate)).clamp(0.0, 1.0)
        if self.sketch_dims:
            names = names * fitted[:, : fitted.shape[1] - self.sketch_dims].norm(dim=-1, keepdim=True)
        return (1 - weight) * fitted + weight * names


def install_concept_head(backbone: nn.Module, config: ConceptHeadConfig | None) -> nn.Module:
    """Put a :class:`ConceptHead` around a timm model's linear head; leave the backbone be for None."""
    if config is None:
        return backbone
    name = str(getattr(backbone, "pretrained_cfg", {}).get("classifier", ""))
    projection = getattr(backbone, name, None) if name.isidentifier() else None
    if not isinstance(projection, nn.Linear):
        raise ConfigError(f"a concept head wraps a timm model's linear projection head; {type(backbone).__name__}'s "
                          f"head {name!r} is a {type(projection).__name__} (build it with an embed_dim)")
    setattr(backbone, name, ConceptHead(projection, config))
    return backbone


def concept_head(backbone: nn.Module) -> ConceptHead:
    """The :class:`ConceptHead` installed in ``backbone`` (a ConfigError when there is none)."""
    heads = [m for m in backbone.modules() if isinstance(m, ConceptHead)]
    if len(heads) != 1:
        raise ConfigError(f"expected one concept head in {type(backbone).__name__}, found {len(heads)}")
    return heads[0]


def set_concepts(head: ConceptHead, weight: Tensor, bias: Tensor, class_embeddings: Tensor) -> None:
    """Load the classifier (``[C, F]``, ``[C]``) and the class-name embeddings (``[C, D]``, made unit)."""
    expected = (tuple(head.classes.weight.shape), tuple(head.classes.bias.shape), tuple(head.class_embeddings.shape))
    given = (tuple(weight.shape), tuple(bias.shape), tuple(class_embeddings.shape))
    if given != expected:
        raise ConfigError(f"concept head shapes differ: given {given}, expected {expected}")
    with torch.no_grad():
        head.classes.weight.copy_(weight)
        head.classes.bias.copy_(bias)
        head.class_embeddings.copy_(F.normalize(class_embeddings, dim=-1))
