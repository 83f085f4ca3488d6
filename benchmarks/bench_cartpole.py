"""Env-steps per second of pgkit's CartPoleVecEnv against Gymnasium's CartPole-v1.

Usage::

    python benchmarks/bench_cartpole.py [--quick]

One env-step is one environment advancing one step, so a vector step at
batch size ``B`` counts ``B``.  Actions are drawn uniformly at random before
the timed loop; every configuration runs in this process on this machine, and
the best of a few repeats is reported.  Prints a markdown table and whether
the two targets are met, and writes ``benchmarks/results/cartpole.json``.

Targets: pgkit at B=1024 at least as fast as Gymnasium's own vectorised
CartPole (``vector_entry_point``) at B=1024; pgkit at B=1 at least three
times as fast as ``gym.make("CartPole-v1")`` (with its default wrappers).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from pgkit.envs import CartPoleVecEnv

RESULTS = Path(__file__).parent / "results" / "cartpole.json"


def best_rate(run, env_steps: int, repeats: int) -> float:
    """Best env-steps per second of ``run()`` over ``repeats`` timings."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return env_steps / best


def bench_pgkit(B: int, n_steps: int, repeats: int) -> float:
    env = CartPoleVecEnv(B)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, size=(n_steps, B))

    def run():
        for a in actions:
            env.step(a)

    return best_rate(run, n_steps * B, repeats)


def bench_gym_vector(B: int, n_steps: int, repeats: int) -> float:
    env = gym.make_vec("CartPole-v1", num_envs=B, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, size=(n_steps, B))

    def run():
        for a in actions:
            env.step(a)  # autoresets by itself (next-step mode)

    return best_rate(run, n_steps * B, repeats)


def bench_gym_single(n_steps: int, repeats: int) -> float:
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, size=n_steps).tolist()

    def run():
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()

    return best_rate(run, n_steps, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    scale = 1 if args.quick else 5
    single_steps, vector_steps = 4_000 * scale, 400 * scale  # per repeat

    rows = []  # (implementation, B, env-steps/s)
    for B in (1, 64, 1024):
        rows.append(("pgkit CartPoleVecEnv", B,
                     bench_pgkit(B, single_steps if B == 1 else vector_steps, repeats)))
    rows.append(("gymnasium make (single env)", 1, bench_gym_single(single_steps, repeats)))
    for B in (1, 64, 1024):
        rows.append(("gymnasium vector_entry_point", B,
                     bench_gym_vector(B, single_steps if B == 1 else vector_steps, repeats)))

    rate = {(name, B): r for name, B, r in rows}
    ratio_1024 = rate["pgkit CartPoleVecEnv", 1024] / rate["gymnasium vector_entry_point", 1024]
    ratio_1 = rate["pgkit CartPoleVecEnv", 1] / rate["gymnasium make (single env)", 1]

    print("| implementation | B | env-steps/s | us per vector step |")
    print("|---|---:|---:|---:|")
    for name, B, r in rows:
        print(f"| {name} | {B} | {r:,.0f} | {1e6 * B / r:.2f} |")
    print()
    print(f"pgkit B=1024 / gym vector B=1024 = {ratio_1024:.2f} "
          f"(target >= 1): {'met' if ratio_1024 >= 1 else 'NOT met'}")
    print(f"pgkit B=1 / gym single = {ratio_1:.2f} "
          f"(target >= 3): {'met' if ratio_1 >= 3 else 'NOT met'}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "CartPole-v1 env-steps per second, random actions",
        "quick": args.quick,
        "repeats": repeats,
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "gymnasium": gym.__version__, "processor": platform.processor(),
                    "platform": platform.platform()},
        "results": [{"implementation": name, "num_envs": B, "env_steps_per_s": r}
                    for name, B, r in rows],
        "targets": {"pgkit_1024_over_gym_vector_1024": ratio_1024,
                    "pgkit_1_over_gym_single": ratio_1},
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
