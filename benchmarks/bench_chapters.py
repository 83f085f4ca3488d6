"""Wall time of executing each chapter as a whole notebook, at one or more budgets.

Usage::

    python benchmarks/bench_chapters.py                        # the budget in PGKIT_BUDGET (default)
    python benchmarks/bench_chapters.py quick default          # several budgets, one after the other
    python benchmarks/bench_chapters.py paper                  # the paper sizes (minutes)

Each chapter's MyST source is read with jupytext and executed in a fresh kernel
(working directory ``chapters/``), as the book build does, with ``PGKIT_BUDGET``
set for the kernel. Prints a table per budget and writes
``benchmarks/results/chapters-<budget>.json``. Targets: each chapter well under a
minute at the default budget on 2 cores (90 s for the chapters that say so); the
whole book in a few minutes.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import zmq_rearm  # noqa: E402,F401  (a widget cell must not stall for the cell timeout)

LEVELS = ("quick", "default", "paper")


def run(budget: str) -> dict:
    os.environ["PGKIT_BUDGET"] = budget              # inherited by each kernel
    rows = []
    print(f"\nbudget: {budget}\n| chapter | seconds |\n|---|---|", flush=True)
    for md in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md")):
        nb = jupytext.read(md)
        client = NotebookClient(nb, timeout=1200, kernel_name="python3",
                                resources={"metadata": {"path": str(md.parent)}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
        rows.append({"chapter": md.name, "seconds": round(seconds, 2)})
        print(f"| {md.name} | {seconds:6.1f} |", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(f"| total | {total:6.1f} |")
    result = {"budget": budget, "cores": os.cpu_count(), "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "chapters": rows,
              "total_seconds": round(total, 2)}
    out = ROOT / "benchmarks" / "results" / f"chapters-{budget}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str]) -> None:
    budgets = argv or [os.environ.get("PGKIT_BUDGET", "default")]
    for budget in budgets:
        if budget not in LEVELS:
            raise SystemExit(f"unknown budget {budget!r}; choose from {', '.join(LEVELS)}")
    for budget in budgets:
        run(budget)


if __name__ == "__main__":
    main(sys.argv[1:])
