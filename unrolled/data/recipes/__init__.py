"""How each dataset is made from its sources: `text`, `images` and `speech` recipes.

A recipe ``obtain_NAME(folder, ...) -> Path`` writes a dataset's
standard-format file (and any files beside it) into the empty ``folder``.
Recipes never import `unrolled.data.registry`: one that builds on another
dataset is given ``source`` (`Source`), which the registry binds to its
``obtain``, so recipes and registry do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Source = Callable[[str], Path]  # a dataset's name -> the path of its file (the registry's obtain)
