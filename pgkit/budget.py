"""One switch for the size of every experiment: the ``PGKIT_BUDGET`` environment variable.

Levels, smallest first:

``quick``
    a few seconds per chapter: enough to see every cell run (smoke tests).
``default``
    what the book is built with: every assert holds, each chapter well under a minute.
``paper``
    the sizes used in the papers the chapters reproduce (minutes to hours).

Every experiment picks its sizes with :func:`choose`::

    n_trajectories = choose(default=2_000, paper=100_000, quick=200)

so that ``PGKIT_BUDGET=paper jupyter-book build .`` scales the whole book up.
"""

from __future__ import annotations

import os

__all__ = ["LEVELS", "budget_level", "choose"]

LEVELS = ("quick", "default", "paper")
ENV_VAR = "PGKIT_BUDGET"


def budget_level() -> str:
    """The current level: the value of ``PGKIT_BUDGET`` (default ``"default"``)."""
    level = os.environ.get(ENV_VAR, "default").strip().lower() or "default"
    if level not in LEVELS:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(LEVELS)}, got {level!r}")
    return level


def choose(*, default, paper=None, quick=None):
    """The value for the current budget level.

    ``paper`` and ``quick`` fall back to ``default`` when not given.
    """
    level = budget_level()
    if level == "paper" and paper is not None:
        return paper
    if level == "quick" and quick is not None:
        return quick
    return default
