"""The release step: making the built-in models and showing them, above ``training`` and ``export``.

``zoo`` loads what is shipped; this package makes it. :mod:`release.ship` copies a trained, exported
entry into the built-in root compactly and records its parity, measured with :mod:`export.parity` on
the export runtime; :mod:`release.shipcheck` re-checks that record; :mod:`release.zoo_table` renders
the README's table; :mod:`release.make_zoo` runs all of it for every model of
``training/recipes/zoo.yaml`` (``make zoo``). ``sslzoo ship`` and ``sslzoo zoo-table`` come from
:mod:`release.cli` through the ``sslzoo.commands`` entry points. Nothing outside imports this package;
a served Bento does not carry it.
"""

from __future__ import annotations

#: The whole built-in root's size limit, ``pip install`` brings every byte of it. Here rather than in
#: :mod:`release.ship` so that ``sslzoo --help`` shows it without importing onnxruntime.
DEFAULT_BUDGET_MB = 40.0
