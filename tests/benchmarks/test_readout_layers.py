"""``benchmarks/readout_layers.py`` on the shipped SimCLR: one row per stage, the pooled linear column on request."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.readout_layers import rows_for
from zoo.data import load_dataset


@pytest.fixture(autouse=True)
def shipped_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests' registries hide the built-in entries; these tests read the shipped SimCLR."""
    monkeypatch.setenv("SSLZOO_BUILTIN", "1")


def test_rows_score_every_stage_and_training_beats_its_random_twin() -> None:
    data = load_dataset("fashion-mnist", "train")
    images, labels = data.images[:1000], np.asarray(data.labels)[:1000]
    rows = rows_for("simclr", images, labels, val=300, seed=0, linear=True)
    assert [row["stage"] for row in rows] == [1, 2, 3, 4]
    assert [row["map"] for row in rows] == ["32×7×7", "64×4×4", "128×4×4", "256×4×4"]  # half width
    for row in rows:
        for column in ("trained", "random", "trained_pooled", "random_pooled", "trained_pooled_linear"):
            assert 0.0 <= row[column] <= 1.0, (row["stage"], column)
    last = rows[-1]
    # What the entry serves: the trained pooled map is far from chance and ahead of its random twin
    assert last["trained_pooled"] > last["random_pooled"] + 0.15
    assert last["trained_pooled_linear"] > 0.75


def test_the_linear_column_is_only_computed_when_asked() -> None:
    data = load_dataset("fashion-mnist", "train")
    rows = rows_for("simclr", data.images[:200], np.asarray(data.labels)[:200], val=50, seed=0)
    assert all("trained_pooled_linear" not in row for row in rows)
