"""The contract every training method meets, so the trainer never branches on method names."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class Method(nn.Module):
    """A trainable method around a backbone from ``zoo``.

    Subclasses implement :meth:`training_step` (returning a dict holding ``"loss"`` plus anything worth
    logging), :meth:`on_step_end` for EMA teachers, centres and schedules, and :meth:`encoder`, which
    returns the part that goes to the registry (heads, predictors, decoders and teachers dropped).

    Attributes:
        min_batch_size: The smallest per-process batch the method's loss is defined on (negatives,
            batch statistics); the trainer refuses a smaller ``--batch-size`` up front.
    """

    min_batch_size: int = 1

    def training_step(self, batch: Any) -> dict[str, Tensor]:
        """One step's losses; ``"loss"`` is back-propagated."""
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (momentum updates, temperature warm-up)."""

    def on_resume(self, step: int, total_steps: int) -> None:
        """Called after a checkpoint of ``step`` finished steps is restored, before the next step.

        Schedule values that :meth:`on_step_end` keeps as plain attributes (not in the state_dict) are
        set here to what they were when the run stopped, so a resumed run continues exactly.
        """

    def encoder(self) -> nn.Module:
        """The encoder to save: an ``ImageEncoder`` (or a ``ClipModel`` for CLIP)."""
        raise NotImplementedError
