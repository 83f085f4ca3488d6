"""Environments written in numpy."""

from pgkit.envs.cartpole import CartPoleVecEnv
from pgkit.envs.continuous_cartpole import ContinuousCartPole
from pgkit.envs.lq import (LinearQuadratic, Trajectories, linear_gaussian_log_probs,
                            linear_gaussian_scores)

__all__ = ["CartPoleVecEnv", "ContinuousCartPole", "LinearQuadratic", "Trajectories",
           "linear_gaussian_log_probs", "linear_gaussian_scores"]
