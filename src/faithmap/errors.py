"""The exception tree: every error faithmap raises on bad input is a :class:`FaithmapError`.

::

    FaithmapError
    ├── InvalidParameterError (ValueError)      a parameter has a wrong type or value
    │   └── UnknownNameError (KeyError)         no method or metric of that name is registered
    ├── ShapeError (ValueError)                 an input tensor has the wrong shape, dtype or values
    ├── TargetError (ValueError)                a target is out of range or cannot be resolved
    ├── ModelError (RuntimeError)               the model raised or returned something unusable
    ├── MissingDependencyError (ImportError)    an optional package is not installed
    ├── ResourceError (MemoryError)             a job would need more memory than is available
    └── FileProblemError (OSError)              a model or data file is missing or unreadable

    ConstantMapWarning (UserWarning)            a method returned a constant or all-zero map

Warnings are not errors: :class:`ConstantMapWarning` is issued (``warnings.warn``) when an
explanation holds a map with one value only, which scores like a random map.

Each class derives from the built-in exception a caller would catch without knowing faithmap
(``except ImportError`` still catches a missing optional package). Messages follow
scikit-learn's form: what was wrong, what was expected, how to fix it, e.g. ``The 'steps'
parameter of insertion must be an int >= 1. Got 0 instead.``
"""

from __future__ import annotations


class FaithmapError(Exception):
    """Base class of every error raised by faithmap on bad input or a failing model."""


class InvalidParameterError(FaithmapError, ValueError):
    """A parameter has a wrong type or value."""


class UnknownNameError(InvalidParameterError, KeyError):
    """No method or metric is registered under the name asked for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ShapeError(FaithmapError, ValueError):
    """An input tensor has the wrong rank, size, dtype, or holds NaN/inf."""


class TargetError(FaithmapError, ValueError):
    """A target is out of range, has the wrong shape, or cannot be resolved."""


class ModelError(FaithmapError, RuntimeError):
    """The model raised, returned something unusable, or lacks what a method needs (autograd)."""


class MissingDependencyError(FaithmapError, ImportError):
    """An optional package that this feature needs is not installed; the message names the extra."""


class FileProblemError(FaithmapError, OSError):
    """A model, weights or data file is missing, unreadable, or refused as unsafe."""


class ConstantMapWarning(UserWarning):
    """A method returned a constant (often all-zero) attribution map for a sample.

    Such a map ranks nothing, so every metric scores it like a random map. The message names the
    method, the samples and the parameter to change (a window or regions too coarse for the input,
    a saturated softmax, a model whose output does not depend on the input).
    """


class ResourceError(FaithmapError, MemoryError):
    """A job would need more memory than is available; raised before allocating, with the bytes
    needed and how to need less (group features with ``regions=``, fewer samples)."""
