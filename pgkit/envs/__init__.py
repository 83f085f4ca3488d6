"""Environments written in numpy."""

from pgkit.envs.cartpole import CartPoleVecEnv

__all__ = ["CartPoleVecEnv"]
