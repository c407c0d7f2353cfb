"""Shapley value sampling: the mean marginal contribution of each feature over random orders."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, SEED, Constraints, Interval, options
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.regions import REGIONS, RegionsLike
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal, score_removals
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.methods.coalitions import Features, make_features

KeepRows = Callable[[Tensor, Tensor], Tensor]
"""Keep vectors ``(B, R)`` of rows ``(samples, indices)``."""
MAX_ALL_FEATURES = 8
"""``n_permutations="all"`` enumerates ``R!`` orders: 40,320 for 8 features (``2**8`` passes)."""
MAX_CODED_FEATURES = 62
"""Up to this many features a coalition is an int64 code, so repeated coalitions are scored once."""


def present_features(features: Features, count: int, batch: int) -> Tensor:
    """``(N, R)`` bool: which features each input has (SLIC may leave labels unused)."""
    if features.regions is None:
        return torch.ones(batch, count, dtype=torch.bool)
    labels = features.regions.labels.flatten(1)
    present = torch.zeros(batch, count, dtype=torch.bool, device=labels.device)
    return present.scatter_(1, labels, True).cpu()  # (N, R): the orders are drawn on the host


def sampled_orders(present: Tensor, n: int, antithetic: bool, seed: int) -> Tensor:
    """``(P, R)`` feature orders of one input: ``n`` random orders of its present features
    (each followed by its reverse when ``antithetic``), the absent ones last.

    The draws depend only on ``seed``, ``n`` and the number of present features, so an input's
    orders are the same whatever batch it is explained in.
    """
    labels = present.nonzero().squeeze(1)
    absent = (~present).nonzero().squeeze(1)
    generator = torch.Generator().manual_seed(seed)
    drawn = -(-n // 2) if antithetic else n
    orders = torch.rand(drawn, labels.numel(), generator=generator).argsort(1)
    if antithetic:
        orders = torch.stack([orders, orders.flip(1)], 1).flatten(0, 1)[:n]
    return torch.cat([labels[orders], absent.expand(n, -1)], 1)


def all_orders(count: int) -> Tensor:
    """Every order of ``count`` features, ``(count!, count)``."""
    return torch.tensor(list(itertools.permutations(range(count))), dtype=torch.long)


@register_method("shapley_sampling")
@dataclass(frozen=True, kw_only=True)
class ShapleySampling(Method):
    """Shapley value sampling (Castro et al. 2009): the Shapley value of each region as its
    mean marginal contribution over random orders of the regions.

    For an order of the ``R`` regions, the coalitions are its prefixes: nothing kept, the first
    region kept, the first two, ..., everything kept; a region's marginal contribution is the
    score with the prefix that ends with it minus the score with the prefix before it. The
    contributions of one order sum to ``score(x) - score(x with every region removed)``, so the
    estimate is efficient for any number of orders. With ``antithetic=True`` each order is
    followed by its reverse (Mitchell et al. 2022): the reversed prefixes are the complements
    of the first order's, which cancels much of the variance for the same passes.

    The prefixes of all orders of all inputs are scored as rows of one stream of batched model
    calls; with at most 62 regions each input's repeated coalitions (the empty and full one,
    and small prefixes that recur) are scored once. An input's orders depend only on ``seed``,
    ``n_permutations`` and how many regions it has. Cost: at most ``n_permutations (R - 1) + 2``
    passes per input.

    Parameters
    ----------
    regions : str, Regions, Tensor or list of lists, default="slic:25"
        The features (see :func:`faithmap.methods.coalitions.make_features`): image regions, or
        for tabular rows ``(N, F)`` columns or groups of columns.
    n_permutations : int or "all", default=16
        Orders per input. ``"all"``: every one of the ``R!`` orders (at most 8 regions), which
        gives the exact Shapley values from the ``2**R`` coalitions.
    antithetic : bool, default=True
        Follow each random order by its reverse (an odd ``n_permutations`` drops the last
        reverse). Ignored with ``"all"``, whose orders already come in reversed pairs.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What a removed region becomes (the baseline).
    activation : {"logits", "softmax"}, default="logits"
    seed : int, default=0

    References
    ----------
    Castro, Gomez, Tejada, "Polynomial calculation of the Shapley value based on sampling",
    Computers & Operations Research 36(5), 2009; Mitchell, Cooper, Frank, Holmes, "Sampling
    Permutations for Shapley Value Estimation", JMLR 23, 2022.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> exp = faithmap.explain(net, torch.rand(2, 3, 8, 8), method="shapley_sampling",
    ...                        regions="patches:4", n_permutations="all", target=0)
    >>> exp.cost.forward  # 2**4 coalitions per image: exact Shapley values
    32
    """

    parameter_constraints: ClassVar[Constraints] = {
        "regions": REGIONS,
        "n_permutations": [Interval(int, 1), options(("all",))],
        "antithetic": [BOOLEAN],
        "fill": FILL,
        "activation": [ACTIVATION],
        "seed": [SEED],
    }

    regions: RegionsLike = "slic:25"
    n_permutations: int | Literal["all"] = 16
    antithetic: bool = True
    fill: FillSpec = 0.0
    activation: Activation = "logits"
    seed: int = 0

    def orders(self, present: Tensor) -> Tensor:
        """``(N, P, R)`` region orders of every input (absent regions last)."""
        count = present.shape[1]
        if self.n_permutations == "all":
            if count > MAX_ALL_FEATURES:
                raise InvalidParameterError(
                    f"n_permutations='all' enumerates R! orders; with {count} regions that is "
                    f"{math.factorial(count):,}. Give an int number of orders, or use at most "
                    f"{MAX_ALL_FEATURES} regions."
                )
            return all_orders(count).expand(present.shape[0], -1, -1)
        n, seed = self.n_permutations, self.seed
        return torch.stack([sampled_orders(row, n, self.antithetic, seed) for row in present])

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        features = make_features(self.regions, inputs)
        count, batch = features.count, inputs.shape[0]
        present = present_features(features, count, batch)
        orders = self.orders(present)
        if count <= MAX_CODED_FEATURES:
            rows, prefix_rows, keep_of = coded_prefixes(orders, present, inputs.device)
        else:
            rows, prefix_rows, keep_of = ranked_prefixes(orders.argsort(2), inputs.device)
        substrate = make_removal(self.fill).substrate(inputs)

        def masks(samples: Tensor, indices: Tensor) -> Tensor:
            keep = keep_of(samples, indices).to(inputs.dtype)
            return features.masks(keep, samples)

        scores = score_removals(
            model, inputs, target, substrate, masks, rows, activation=self.activation
        ).double()
        steps = scores.gather(1, prefix_rows.flatten(1).to(scores.device)).view(prefix_rows.shape)
        gains = (steps[..., 1:] - steps[..., :-1]).flatten(1)
        values = torch.zeros(batch, count, dtype=torch.float64, device=scores.device)
        values.scatter_add_(1, orders.flatten(1).to(scores.device), gains)
        return features.paint((values / orders.shape[1]).to(inputs.dtype))


def coded_prefixes(
    orders: Tensor, present: Tensor, device: torch.device
) -> tuple[int, Tensor, KeepRows]:
    """Each input's distinct prefix coalitions as int64 codes (bit ``r``: region ``r`` kept).

    Returns the rows per input (the most distinct coalitions of any input; an input with fewer
    repeats its full coalition), the row of each prefix ``(N, P, R + 1)``, and the keep vectors
    of rows ``(samples, indices)``. Absent regions set no bit, so every prefix past an input's
    last present region is its full coalition and is scored once. The codes are sent to
    ``device`` once, so the keep vectors are made there with no copy per batch.
    """
    batch, n, count = orders.shape
    bits = torch.where(present, 2 ** torch.arange(count), 0)
    sums = bits.gather(1, orders.flatten(1)).view(orders.shape).cumsum(2)
    codes = torch.cat([torch.zeros(batch, n, 1, dtype=torch.long), sums], 2)
    distinct = [torch.unique(row, return_inverse=True) for row in codes]
    rows = max(table.numel() for table, _ in distinct)
    table = torch.stack([torch.cat([t, t[-1:].expand(rows - t.numel())]) for t, _ in distinct])
    table, powers = table.to(device), torch.arange(count, device=device)

    def keep_of(samples: Tensor, indices: Tensor) -> Tensor:
        return (table[samples, indices][:, None] >> powers) & 1

    return rows, torch.stack([inverse for _, inverse in distinct]), keep_of


def ranked_prefixes(ranks: Tensor, device: torch.device) -> tuple[int, Tensor, KeepRows]:
    """Every prefix as its own row (more than 62 regions, where repeats are rare): row 0 keeps
    nothing, row 1 everything, row ``2 + p (R - 1) + k - 1`` the first ``k`` regions of order
    ``p``. Returns the same three things as :func:`coded_prefixes`."""
    batch, n, count = ranks.shape
    ranks = ranks.to(device)
    inner = 2 + torch.arange(n * (count - 1)).view(n, count - 1)
    ends = torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long)
    prefix_rows = torch.cat([ends[0], inner, ends[1]], 1).expand(batch, -1, -1)

    def keep_of(samples: Tensor, indices: Tensor) -> Tensor:
        shifted = (indices - 2).clamp_min(0)
        order, size = shifted // (count - 1), shifted % (count - 1) + 1
        size = torch.where(indices < 2, indices * count, size)
        return (ranks[samples, order] < size[:, None]).long()

    return 2 + n * (count - 1), prefix_rows, keep_of
