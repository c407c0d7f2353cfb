"""Parameter declarations that several metrics share, written once.

A metric's registration declares the constraints of each keyword parameter
(:func:`~faithmap.core.registry.register_metric`); the parameters below mean the same in every
metric that takes them, so they are declared here and spread into each registration
(``constraints={**REMOVAL_CONSTRAINTS, "steps": [...]}``).

References
----------
Covert, Lundberg, Lee, "Explaining by Removing: A Unified Framework for Model Explanation",
JMLR 2021 (the removal parameters: what is scored, and what removed features become).
"""

from __future__ import annotations

from faithmap.core.constraints import SEED, Constraints
from faithmap.core.method import METHOD
from faithmap.core.readout import ACTIVATION
from faithmap.core.removal import FILL_OR_REMOVAL
from faithmap.core.targets import TARGET

REMOVAL_CONSTRAINTS: Constraints = {
    "target": TARGET,
    "fill": FILL_OR_REMOVAL,
    "activation": [ACTIVATION],
}
"""The parameters of every metric that scores the model on inputs with features removed: the
``target`` scored, the ``fill`` removed features become, and the ``activation`` read."""

REEXPLAIN_CONSTRAINTS: Constraints = {
    "target": TARGET,
    "method": METHOD,
    "seed": [SEED],
}
"""The parameters of every metric that runs the explaining method again
(:mod:`~faithmap.metrics.reexplain`): the ``target`` explained, the ``method`` and the ``seed``
of the perturbations."""
