"""Stale actors on CartPole-v1: the three corrections against the lag, and wall time.

Usage::

    python benchmarks/bench_vtrace.py [--replicates R] [--lags K ...] [--total-steps N]
                                      [--actors B] [--lag-distribution fixed|uniform]
                                      [--hidden H ...] [--seed S] [--json PATH]

One call of :func:`pgkit.actor_learner.train_actor_learner` runs the whole
grid in lockstep: R replicates x the lags x the corrections ``none``, ``is``
and ``vtrace``, each member with B actors (``CartPoleVecEnv(members * B)``)
and ``--total-steps`` environment steps, every other setting at the loop's
defaults. "Solved" is the criterion of bench_ppo.py: the mean return of the
last 20 finished training episodes reaches 475; ``solve_steps`` is the number
of environment steps when it first did. Also reported per lag and
correction: the mean return of the episodes that ended in the last tenth of
the budget, and the mean of the ``mean_rho`` and ``approx_kl`` diagnostics
(how far the behaviour policy lags behind). The replicates are members of one
run (one rng), so they differ in their initial networks, environments and
action draws.

Prints a markdown table and writes JSON (default ``benchmarks/results/vtrace.json``)
with the settings, the wall time of the call and one record per member. Sets
``OPENBLAS_NUM_THREADS=1`` (as bench_ppo.py does) unless it is set.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from pgkit.actor_learner import CORRECTIONS, train_actor_learner  # noqa: E402
from pgkit.envs import CartPoleVecEnv  # noqa: E402
from pgkit.nn import CategoricalMLPPolicy, ValueMLP  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "vtrace.json"
SOLVED_AT, WINDOW = 475.0, 20


def solve_steps(history) -> float:
    """Environment steps when the mean of the last WINDOW episodes first reached 475."""
    returns = history.episode_returns
    if returns.size < WINDOW:
        return float("nan")
    running = np.convolve(returns, np.ones(WINDOW) / WINDOW, mode="valid")
    hit = np.flatnonzero(running >= SOLVED_AT)
    if not hit.size:
        return float("nan")
    return float(history.episode_end_steps[WINDOW - 1 + hit[0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--lags", type=int, nargs="+", default=[0, 4, 16])
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--lag-distribution", default="fixed")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    grid = list(itertools.product(range(args.replicates), args.lags, CORRECTIONS))
    S, hidden = len(grid), tuple(args.hidden)
    load_before = os.getloadavg()
    start = time.perf_counter()
    histories = train_actor_learner(
        CartPoleVecEnv(S * args.actors), CategoricalMLPPolicy(4, 2, hidden),
        ValueMLP(4, hidden), np.random.default_rng(args.seed),
        total_steps=args.total_steps, population=S,
        lag=[lag for _, lag, _ in grid], correction=[c for _, _, c in grid],
        lag_distribution=args.lag_distribution)
    seconds = time.perf_counter() - start

    records = []
    for (replicate, lag, correction), h in zip(grid, histories):
        late = h.episode_end_steps > 0.9 * h.env_steps[-1]
        records.append({"replicate": replicate, "lag": lag, "correction": correction,
                        "solve_steps": solve_steps(h),
                        "late_mean_return": float(h.episode_returns[late].mean())
                        if late.any() else float("nan"),
                        "mean_rho": float(h.diagnostics["mean_rho"].mean()),
                        "approx_kl": float(h.diagnostics["approx_kl"].mean())})
    print(f"{S} members ({args.replicates} replicates x lags {args.lags} x "
          f"{len(CORRECTIONS)} corrections), {args.actors} actors each, "
          f"{args.total_steps} steps each, lag {args.lag_distribution}, "
          f"hidden {hidden}: {seconds:.1f} s\n")
    print("| lag | correction | solved | median steps to solve | late mean return "
          "| mean rho | approx KL |")
    print("|---|---|---|---|---|---|---|")
    for lag, correction in itertools.product(args.lags, CORRECTIONS):
        rows = [r for r in records if r["lag"] == lag and r["correction"] == correction]
        steps = np.array([r["solve_steps"] for r in rows])
        solved = np.isfinite(steps)
        median = f"{np.median(steps[solved]):.0f}" if solved.any() else "-"
        late = np.nanmean([r["late_mean_return"] for r in rows])
        print(f"| {lag} | {correction} | {solved.sum()}/{len(rows)} | {median} "
              f"| {late:.0f} "
              f"| {np.mean([r['mean_rho'] for r in rows]):.3f} "
              f"| {np.mean([r['approx_kl'] for r in rows]):.3g} |")
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    out = {"benchmark": "stale actors on CartPole-v1, train_actor_learner defaults",
           "settings": settings,
           "seconds": round(seconds, 2),
           "machine": {"python": platform.python_version(), "numpy": np.__version__,
                       "cpu_count": os.cpu_count(),
                       "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                       "load_average_before": load_before,
                       "load_average_after": os.getloadavg()},
           "records": records}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
