"""Subset-selection attribution: SMDL and LiMA, their objective and their searches."""

from faithmap.methods.subset.lima import Lima
from faithmap.methods.subset.smdl import Smdl

__all__ = ["Lima", "Smdl"]
