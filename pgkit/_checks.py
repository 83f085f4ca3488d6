"""Input checks shared by pgkit's public functions.

Every public function checks what it is given and fails with a message a
reader can act on, for example::

    ValueError: rewards must have shape [T, B], got (5,)

These helpers are private: their names may change, the messages they raise
are part of the public contract and are tested.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__: list[str] = []


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_float_array(x, name: str, *, ndim=None, shape_doc: str | None = None,
                   allow_nan: bool = False) -> np.ndarray:
    """``x`` as a float64 array, with its number of dimensions checked.

    ``ndim`` may be an int or a tuple of allowed ints; ``shape_doc`` is the
    shape as the docstrings write it (``"[T, B]"``), used in the message.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers, got {type(x).__name__}") from err
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            doc = shape_doc or f"{allowed[0]} dimensions"
            raise ValueError(f"{name} must have shape {doc}, got {_shape_str(arr.shape)}")
    if not allow_nan and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def as_bool_array(x, name: str, *, shape=None, shape_doc: str | None = None) -> np.ndarray:
    """``x`` as a boolean array; 0/1 numbers are accepted, other values are not."""
    arr = np.asarray(x)
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_doc or _shape_str(shape)}, "
                         f"got {_shape_str(arr.shape)}")
    return arr


def as_int_array(x, name: str, *, low: int | None = None, high: int | None = None) -> np.ndarray:
    """``x`` as an integer array with values in ``[low, high)``."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integers, got non-integer values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.size:
        if low is not None and arr.min() < low:
            raise ValueError(f"{name} must be >= {low}, got {arr.min()}")
        if high is not None and arr.max() >= high:
            raise ValueError(f"{name} must be < {high}, got {arr.max()}")
    return arr


def check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, "
                         f"got {_shape_str(a.shape)} and {_shape_str(b.shape)}")


def check_distribution(p: np.ndarray, name: str, *, axis: int = -1, atol: float = 1e-8) -> None:
    """Raise unless ``p`` is non-negative and sums to one along ``axis``."""
    if np.isnan(p).any():
        raise ValueError(f"{name} contains NaN")
    if (p < 0).any():
        raise ValueError(f"{name} must be non-negative probabilities, got a minimum of {p.min():.3g}")
    sums = p.sum(axis=axis)
    if not np.allclose(sums, 1.0, atol=atol, rtol=0):
        worst = float(np.max(np.abs(sums - 1.0)))
        raise ValueError(f"{name} must sum to one along axis {axis}, "
                         f"but a sum is off by {worst:.3g}")


def check_discount(gamma, name: str = "gamma", *, allow_one: bool = True) -> float:
    if not isinstance(gamma, numbers.Real) or isinstance(gamma, bool):
        raise ValueError(f"{name} must be a number, got {type(gamma).__name__}")
    gamma = float(gamma)
    if np.isnan(gamma) or gamma < 0 or gamma > 1 or (gamma == 1 and not allow_one):
        bound = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {gamma}")
    return gamma


def check_positive_int(n, name: str, *, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return int(n)


def check_nonnegative(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a number, got {type(x).__name__}")
    x = float(x)
    if np.isnan(x) or x < 0:
        raise ValueError(f"{name} must be non-negative, got {x}")
    return x


def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")
    return rng
