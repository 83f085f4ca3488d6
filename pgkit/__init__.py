"""pgkit: policy-gradient methods and importance sampling in numpy."""

__version__ = "0.2.0"
