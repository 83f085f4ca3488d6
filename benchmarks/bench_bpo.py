"""Time of BPO on the scalar LQ problem, and of the paper-level study of chapter 6.

Usage::

    python benchmarks/bench_bpo.py [--n-jobs N] [--seeds S] [--quick] [--json PATH]

Part 1 times single runs, in this process, at the chapter's size: BPO, GPOMDP
and STORM-PG on the scalar LQ problem (A = B = Q = R = 1, H = 10, gamma = 0.9,
std 0.5, from K = 0) with 2000 trajectories and N_PG = N_BPO = 10 (median of
5 runs each).

Part 2 runs the whole study through :func:`pgkit.behaviour.sweep` with
``n_jobs`` processes (joblib, default 2) and times each part:

- the variance study (Table 1 in spirit): on the scalar LQ problem over a
  grid of gains {-0.9, -0.7, -0.5, -0.3, -0.1} and stds {0.1, 0.25, 0.5, 1.0},
  the per-trajectory variance of on-policy GPOMDP, of the ideal sampler, and
  of BPO's defensive samplers for beta in {0, 0.4, 0.8, rule}, 10 000
  trajectories each; then state dimensions n in {2, 5, 10} (A = B = Q = R = I,
  K = -0.3 I);
- learning curves of GPOMDP, STORM-PG and BPO (beta by the rule) on LQ
  (5000 trajectories) and on the continuous cart-pole (5000 trajectories);
- the beta study (0, 0.4, 0.8, rule) on both;
- the batch-size study (N_PG in 5, 10, 20, 50, 100) of BPO and GPOMDP on both;

each over ``--seeds`` seeds (default 10). Step sizes are fixed, plain
gradient ascent: 0.003 on LQ, 0.01 on the cart-pole, for every algorithm
(chosen once, not per seed or per algorithm). The std is fixed at 0.5 (LQ)
and 1.0 (cart-pole).

Prints the timings and a summary of the results (final distance to the
optimal return on LQ, final evaluated return on the cart-pole, mean over
seeds with its standard error), and writes JSON (default
``benchmarks/results/bpo.json``). These are this project's own numbers; the
paper's table could not be consulted. ``--quick`` shrinks every size, to
check that the script runs.

OpenBLAS and OpenMP are limited to one thread per process (the arrays are
small and the processes are the parallelism); the load average is recorded,
as wall times on a shared machine are pessimistic.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from pgkit.behaviour import (gradient_variance_study, sweep, train_bpo,  # noqa: E402
                             train_from_seed, train_gpomdp, train_storm)
from pgkit.envs import ContinuousCartPole, LinearQuadratic  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bpo.json"
LQ = LinearQuadratic(1, 1, 1, 1, horizon=10, gamma=0.9)
CARTPOLE = ContinuousCartPole(horizon=100, gamma=0.99)
ENVS = {
    "lq": dict(env=LQ, gain=[[0.0]], std=0.5, step_size=0.003),
    "cartpole": dict(env=CARTPOLE, gain=[[0.0, 0.0, 0.0, 0.0]], std=1.0, step_size=0.01),
}
GAINS = (-0.9, -0.7, -0.5, -0.3, -0.1)
STDS = (0.1, 0.25, 0.5, 1.0)
BETAS = (0.0, 0.4, 0.8, "rule")
BATCHES = (5, 10, 20, 50, 100)
DIMENSIONS = (2, 5, 10)


def variance_task(seed, env, gain, std, n_samples, n_bpo):
    """One cell of the variance study, as plain numbers (picklable, small)."""
    study = gradient_variance_study(env, gain, std, np.random.default_rng(seed),
                                    n_samples=n_samples, n_bpo=n_bpo, betas=BETAS)
    z = study.z_scores()
    return {"labels": study.labels, "variance": study.variance_traces.tolist(),
            "variance_se": study.variance_ses.tolist(),
            "max_abs_z": float(np.nanmax(np.abs(z))), "kl": study.kl,
            "rule_beta": study.rule_beta}


def curve_task(seed, algorithm, env_name, n_trajectories, n_eval, **options):
    """One learning curve on a grid of trajectories used, as plain numbers."""
    spec = dict(ENVS[env_name])
    curve = train_from_seed(algorithm, spec.pop("env"), spec.pop("gain"), spec.pop("std"),
                            seed, n_trajectories=n_trajectories,
                            n_eval=0 if env_name == "lq" else n_eval, **spec, **options)
    grid = np.linspace(0, n_trajectories, 51)
    which = "exact_returns" if env_name == "lq" else "eval_returns"
    return {"grid": grid.tolist(), "values": curve.at(grid, which).tolist(),
            "final": float(getattr(curve, which)[-1]), "diverged": curve.diverged,
            "seconds": float(curve.wall_time[-1])}


def timed(label, function, timings):
    start = time.perf_counter()
    out = function()
    timings[label] = time.perf_counter() - start
    print(f"  {label}: {timings[label]:.1f} s", flush=True)
    return out


def summary(rows, optimum=None):
    finals = np.array([r["final"] for r in rows])
    if optimum is not None:
        finals = optimum - finals
    return float(finals.mean()), float(finals.std(ddof=1) / np.sqrt(finals.size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    quick = args.quick
    seeds = list(range(args.seeds if not quick else 2))
    budget = 5000 if not quick else 200
    n_samples = 10_000 if not quick else 200
    n_eval = 20 if not quick else 5
    record = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
              "load_average_before": os.getloadavg(), "n_jobs": args.n_jobs,
              "seeds": seeds, "quick": quick}

    # -- part 1: one run at the chapter's size
    print("Part 1: single runs on the scalar LQ problem, 2000 trajectories, "
          "N_PG = N_BPO = 10 (median of 5)")
    single = {}
    for name, loop in (("bpo", train_bpo), ("gpomdp", train_gpomdp), ("storm", train_storm)):
        times = []
        for seed in range(5):
            start = time.perf_counter()
            loop(LQ, [[0.0]], 0.5, np.random.default_rng(seed), n_trajectories=2000,
                 batch_size=10, step_size=0.003)
            times.append(time.perf_counter() - start)
        single[name] = float(np.median(times))
        print(f"  {name}: {1000 * single[name]:.0f} ms")
    record["single_run_seconds"] = single

    # -- part 2: the study
    print(f"Part 2: the paper-level study, {len(seeds)} seeds, n_jobs = {args.n_jobs}")
    timings, results = {}, {}
    start_all = time.perf_counter()
    run = lambda task, settings: sweep(task, settings, seeds, n_jobs=args.n_jobs)  # noqa: E731

    grid = [dict(env=LQ, gain=[[k]], std=s, n_samples=n_samples, n_bpo=100)
            for k in GAINS for s in STDS]
    results["variance_grid"] = timed("variance grid (5 gains x 4 stds)", lambda: sweep(
        variance_task, grid, seeds[:1], n_jobs=args.n_jobs), timings)
    dims = [dict(env=LinearQuadratic(np.eye(n), np.eye(n), np.eye(n), np.eye(n), 10, 0.9),
                 gain=-0.3 * np.eye(n), std=0.5, n_samples=n_samples, n_bpo=100)
            for n in DIMENSIONS]
    results["variance_dimensions"] = timed("variance, state dimensions 2, 5, 10",
                                           lambda: sweep(variance_task, dims, seeds[:1],
                                                         n_jobs=args.n_jobs), timings)
    for env_name in ENVS:
        common = dict(env_name=env_name, n_trajectories=budget, n_eval=n_eval,
                      batch_size=10)
        curves = [dict(common, algorithm=a) for a in ("gpomdp", "storm", "bpo")]
        results[f"curves_{env_name}"] = timed(f"learning curves, {env_name}",
                                              lambda: run(curve_task, curves), timings)
        betas = [dict(common, algorithm="bpo", beta=b) for b in BETAS]
        results[f"betas_{env_name}"] = timed(f"beta study, {env_name}",
                                             lambda: run(curve_task, betas), timings)
        batches = [dict(common, algorithm=a, batch_size=n)
                   for a in ("bpo", "gpomdp") for n in BATCHES]
        results[f"batches_{env_name}"] = timed(f"batch-size study, {env_name}",
                                               lambda: run(curve_task, batches), timings)
    timings["total"] = time.perf_counter() - start_all
    print(f"  total: {timings['total']:.1f} s ({timings['total'] / 60:.1f} min)")
    record.update(timings=timings, load_average_after=os.getloadavg())

    # -- what the study found
    optimum = LQ.exact_return(LQ.optimal_gain(0.5), 0.5)
    print("\nVariance study, scalar LQ (per-trajectory trace of the covariance):")
    print("| K | std | " + " | ".join(results["variance_grid"][0][0]["labels"])
          + " | max abs z | rule beta |")
    print("|---|---|" + "---|" * (len(results["variance_grid"][0][0]["labels"]) + 2))
    for cell, (k, s) in zip(results["variance_grid"], [(k, s) for k in GAINS for s in STDS]):
        c = cell[0]
        print(f"| {k} | {s} | " + " | ".join(f"{v:.3g}" for v in c["variance"])
              + f" | {c['max_abs_z']:.2f} | {c['rule_beta']:.2f} |")
    for n, cell in zip(DIMENSIONS, results["variance_dimensions"]):
        c = cell[0]
        print(f"| n = {n} | 0.5 | " + " | ".join(f"{v:.3g}" for v in c["variance"])
              + f" | {c['max_abs_z']:.2f} | {c['rule_beta']:.2f} |")
    for env_name in ENVS:
        opt = optimum if env_name == "lq" else None
        what = "J* - J, final" if env_name == "lq" else "evaluated return, final"
        print(f"\n{env_name} ({what}, mean +- se over {len(seeds)} seeds, {budget} "
              "trajectories):")
        for label, rows in (
                [(a, r) for a, r in zip(("gpomdp", "storm", "bpo"),
                                        results[f"curves_{env_name}"])]
                + [(f"bpo beta={b}", r) for b, r in zip(BETAS, results[f"betas_{env_name}"])]
                + [(f"{a} N_PG={n}", r) for (a, n), r in zip(
                    [(a, n) for a in ("bpo", "gpomdp") for n in BATCHES],
                    results[f"batches_{env_name}"])]):
            mean, se = summary(rows, opt)
            diverged = sum(r["diverged"] for r in rows)
            print(f"  {label:18s} {mean:9.4f} +- {se:.4f}"
                  + (f"  ({diverged} diverged)" if diverged else ""))
    record["results"] = results
    record["lq_optimal_return"] = optimum
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
