"""Subset-selection attribution: SMDL and its LiMA preset, their objective and searches."""

from faithmap.methods.subset.smdl import Lima, Smdl

__all__ = ["Lima", "Smdl"]
