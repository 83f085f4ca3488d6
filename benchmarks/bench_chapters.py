"""Wall time of executing each chapter as a whole notebook, at the current budget.

Usage::

    python benchmarks/bench_chapters.py                 # the default budget
    PGKIT_BUDGET=paper python benchmarks/bench_chapters.py

Each chapter's MyST source is read with jupytext and executed in a fresh kernel
(working directory ``chapters/``), as the book build does. Prints a table and
writes ``benchmarks/results/chapters-<budget>.json``. Targets: each chapter well
under a minute at the default budget on 2 cores; the whole book in a few minutes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    budget = os.environ.get("PGKIT_BUDGET", "default")
    rows = []
    for md in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md")):
        nb = jupytext.read(md)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(md.parent)}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
        rows.append({"chapter": md.name, "seconds": round(seconds, 2)})
        print(f"| {md.name} | {seconds:6.1f} s |", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(f"| total | {total:6.1f} s |")
    out = ROOT / "benchmarks" / "results" / f"chapters-{budget}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"budget": budget, "cores": os.cpu_count(),
                               "python": platform.python_version(), "chapters": rows,
                               "total_seconds": round(total, 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
