"""The exception tree: every error faithmap raises on bad input is a :class:`FaithmapError`.

Messages follow scikit-learn's form: what was wrong, what was expected, how to fix it,
e.g. ``The 'steps' parameter of insertion must be an int >= 1. Got 0 instead.``
"""

from __future__ import annotations


class FaithmapError(Exception):
    """Base class of every error raised by faithmap on bad input or a failing model."""


class InvalidParameterError(FaithmapError, ValueError):
    """A parameter has a wrong type or value."""


class ShapeError(FaithmapError, ValueError):
    """An input tensor has the wrong rank, size, dtype, or holds NaN/inf."""


class TargetError(FaithmapError, ValueError):
    """A target is out of range, has the wrong shape, or cannot be resolved."""


class ModelError(FaithmapError, RuntimeError):
    """The model raised, returned something unusable, or lacks what a method needs (autograd)."""
