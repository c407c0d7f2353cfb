"""The result of a generation explanation: a (generated steps x prompt features) matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from faithmap.core.cost import Cost
from faithmap.generation.continuation import Continuation
from faithmap.generation.features import PromptFeatures


@dataclass(frozen=True)
class GenerationExplanation:
    """Which prompt features drove each generated token.

    Attributes
    ----------
    attributions : Tensor
        ``(S, F)`` raw attributions (no rescaling): row ``s`` explains step ``s``'s target,
        column ``f`` is prompt feature ``f``.
    scores : Tensor
        ``(S,)`` each step's target on the whole prompt: the log-probability of the step's token
        (minus that of the contrast token, for contrastive targets).
    continuation : Continuation
        The prompt, the continuation's token ids and texts, and the contrast tokens.
    features : PromptFeatures
        The feature of each prompt token and each feature's text.
    method : str
    config : dict
        The method's parameters, with ``features``, ``baseline`` and ``generated``.
    cost : Cost
        Model passes (forward, backward, counted per row) and seconds.
    """

    attributions: Tensor
    scores: Tensor
    continuation: Continuation
    features: PromptFeatures
    method: str
    config: dict[str, Any]
    cost: Cost

    @property
    def step_ids(self) -> Tensor:
        """``(S,)`` the token id of each generated step."""
        return self.continuation.ids

    @property
    def step_tokens(self) -> list[str]:
        """Each generated step's token text."""
        return self.continuation.tokens

    @property
    def feature_names(self) -> list[str]:
        """Each prompt feature's text."""
        return self.features.names

    def top_features(self, k: int = 3) -> list[list[str]]:
        """For each step, the names of its ``k`` features of largest attribution."""
        k = min(k, self.features.count)
        order = self.attributions.topk(k, dim=1).indices.tolist()
        return [[self.features.names[f] for f in row] for row in order]

    def passes_per_step(self) -> float:
        """Model passes per generated token."""
        return self.cost.passes / self.continuation.steps
