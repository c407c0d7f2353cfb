"""Greedy searches for an ordering of regions that maximises a set function.

Every search here is independent of the objective: it only calls ``score(samples, keeps)``,
which gives the objective's value ``(M,)`` for ``M`` subsets, row ``m`` being the subset
``keeps[m]`` (a ``(R,)`` bool row over the regions) of image ``samples[m]``. All images of the
batch are searched together and every step sends all its candidates to ``score`` in one call, so
the objective can score them through the model in one batched call (and skip the subsets it has
already seen). Each search returns the order ``(N, R)``, most valuable region first.

References
----------
Nemhauser, Wolsey, Fisher, "An analysis of approximations for maximizing submodular set
functions", Mathematical Programming 14, 1978 (greedy). Minoux, "Accelerated greedy algorithms
for maximizing submodular set functions", 1978 (lazy greedy). Mirzasoleiman et al., "Lazier
Than Lazy Greedy", AAAI 2015 (stochastic greedy). Chen et al., "Less is More: Efficient
Black-box Attribution via Minimal Interpretable Subset Selection", 2025 (bidirectional greedy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

SetScore = Callable[[Tensor, Tensor], Tensor]
"""``score(samples (M,), keeps (M, R) bool) -> (M,)`` values of the objective."""

Search = Literal["greedy", "lazy", "stochastic", "bidirectional", "gradient"]
Estimate = Callable[[Tensor, Tensor], Tensor]
"""``estimate(samples (M,), keeps (M, R) bool) -> (M, R)`` first-order marginal gains."""
SEARCHES = get_args(Search)


def _candidates(chosen: Tensor) -> Tensor:
    """Indices ``(N, k)`` of the regions not yet chosen; every row has the same ``k``."""
    n = chosen.shape[0]
    return (~chosen).nonzero()[:, 1].view(n, -1)


def _score_additions(score: SetScore, base: Tensor, additions: Tensor) -> Tensor:
    """Scores ``(N, k)`` of ``base[i] | {additions[i, j]}`` for every image and candidate."""
    n, k = additions.shape
    keeps = base.unsqueeze(1).expand(n, k, base.shape[1]).clone()
    keeps.scatter_(2, additions.unsqueeze(2), True)
    samples = torch.arange(n, device=base.device).repeat_interleave(k)
    return score(samples, keeps.view(n * k, -1)).view(n, k)


def _take(chosen: Tensor, order: list[Tensor], picks: Tensor) -> None:
    """Append ``picks`` ``(N,)`` to the order and mark them chosen."""
    chosen.scatter_(1, picks.unsqueeze(1), True)
    order.append(picks)


def greedy(score: SetScore, n: int, count: int, device: torch.device) -> Tensor:
    """Plain greedy: at each step add the candidate with the highest score.

    Scores every candidate of every step, the last lone one included: ``count (count + 1) / 2``
    subsets per image.
    """
    chosen = torch.zeros(n, count, dtype=torch.bool, device=device)
    order: list[Tensor] = []
    for _ in range(count):
        candidates = _candidates(chosen)
        values = _score_additions(score, chosen, candidates)
        _take(chosen, order, candidates.gather(1, values.argmax(1, keepdim=True)).squeeze(1))
    return torch.stack(order, 1)


def lazy_greedy(score: SetScore, n: int, count: int, device: torch.device) -> Tensor:
    """Lazy greedy with stale upper bounds on the marginal gains (Minoux 1978).

    A candidate's last computed gain bounds its gain now if the objective is submodular; the
    candidate with the highest bound is re-scored, and taken once its fresh gain still tops every
    bound. On a submodular objective this is exactly :func:`greedy`'s order (ties to the lowest
    index) with fewer subsets scored; on others it is an approximation. Each round re-scores one
    candidate for every image still looking, in one call.
    """
    arange = torch.arange(n, device=device)
    chosen = torch.zeros(n, count, dtype=torch.bool, device=device)
    current = score(arange, chosen.clone())
    everything = _candidates(chosen)
    bounds = _score_additions(score, chosen, everything) - current[:, None]
    order: list[Tensor] = []
    for step in range(count):
        fresh = torch.full((n, count), step == 0, dtype=torch.bool, device=device)
        while True:
            open_bounds = bounds.masked_fill(chosen, -math.inf)
            top = open_bounds.argmax(1)
            looking = ~fresh[arange, top]
            if not bool(looking.any()):
                break
            samples, regions = arange[looking], top[looking]
            keeps = chosen[samples].clone()
            keeps[torch.arange(samples.shape[0], device=device), regions] = True
            bounds[samples, regions] = score(samples, keeps) - current[samples]
            fresh[samples, regions] = True
        current = current + bounds[arange, top]
        _take(chosen, order, top)
    return torch.stack(order, 1)


def stochastic_greedy(
    score: SetScore,
    n: int,
    count: int,
    device: torch.device,
    *,
    epsilon: float,
    generator: torch.Generator,
) -> Tensor:
    """Stochastic greedy (Mirzasoleiman et al. 2015): each step scores a random sample.

    Ranking all ``count`` regions, each step draws ``ceil(ln(1 / epsilon))`` of the remaining
    candidates (``count / k * ln(1 / epsilon)`` with ``k = count``) and adds the best of them.
    The draw of a step is the same for every image (random keys over the region indices), so an
    image's result does not depend on the rest of the batch.
    """
    size = max(1, math.ceil(math.log(1.0 / epsilon)))
    chosen = torch.zeros(n, count, dtype=torch.bool, device=device)
    order: list[Tensor] = []
    for _ in range(count):
        keys = torch.rand(count, generator=generator).to(device).expand(n, count)
        keys = keys.masked_fill(chosen, math.inf)
        remaining = count - len(order)
        drawn = keys.topk(min(size, remaining), dim=1, largest=False).indices
        values = _score_additions(score, chosen, drawn)
        _take(chosen, order, drawn.gather(1, values.argmax(1, keepdim=True)).squeeze(1))
    return torch.stack(order, 1)


def bidirectional_greedy(
    score: SetScore, n: int, count: int, device: torch.device, *, pending: int
) -> Tensor:
    """LiMA's bidirectional greedy: a front set of the most and a back set of the least valuable.

    While more than ``pending`` (``P``) candidates remain, each step scores every candidate added
    to the front set ``S`` and takes the best; then it pre-selects the ``P`` candidates (other
    than the one just taken) with the lowest front-side score, scores each added to the back set
    ``D`` and puts the lowest into ``D``. The last ``<= P`` regions are ranked by plain greedy;
    the order is ``S`` followed by ``D`` reversed. Unlike the reference, which pre-selects ``P``
    and then drops the front pick if it is among them (``P - 1`` or ``P`` back candidates), the
    front pick is excluded before pre-selecting, so every back step scores exactly ``P``.
    The last lone region is placed without scoring.
    """
    front = torch.zeros(n, count, dtype=torch.bool, device=device)
    back = torch.zeros(n, count, dtype=torch.bool, device=device)
    ahead: list[Tensor] = []
    behind: list[Tensor] = []
    while len(ahead) + len(behind) < count:
        candidates = _candidates(front | back)
        if candidates.shape[1] == 1:
            _take(front, ahead, candidates[:, 0])
            break
        values = _score_additions(score, front, candidates)
        best = values.argmax(1, keepdim=True)
        if candidates.shape[1] > pending:
            proxy = values.scatter(1, best, math.inf)
            shortlist = candidates.gather(1, proxy.topk(pending, 1, largest=False).indices)
            worst = _score_additions(score, back, shortlist).argmin(1, keepdim=True)
            _take(back, behind, shortlist.gather(1, worst).squeeze(1))
        _take(front, ahead, candidates.gather(1, best).squeeze(1))
    return torch.stack(ahead + behind[::-1], 1)


def gradient_checks(pool: int, step: int, remaining: int) -> int:
    """Candidates the gradient search scores exactly at ``step`` (0-based) with ``remaining``
    left: ``min(remaining, pool // (step + 1))`` (0: it takes the estimate's best unscored)."""
    return min(remaining, pool // (step + 1))


def gradient_greedy(
    score: SetScore,
    estimate: Estimate,
    n: int,
    count: int,
    device: torch.device,
    *,
    pool: int,
) -> Tensor:
    """Greedy guided by first-order gains: each step ranks every candidate by ``estimate`` (one
    forward and one backward pass per side at the current subset) and scores exactly only the
    best ``pool // (step + 1)`` of them, taking the best fresh value; with none to score it
    takes the estimate's best. The last region is placed without an estimate, and a step that
    scores every candidate needs none (``pool >= R^2``: plain greedy, ties to the lowest index).
    ``R`` regions cost ``R - 1`` estimates and ``sum_t gradient_checks(pool, t, R - t)``
    subsets (:func:`gradient_checks`).
    """
    arange = torch.arange(n, device=device)
    chosen = torch.zeros(n, count, dtype=torch.bool, device=device)
    order: list[Tensor] = []
    for step in range(count):
        remaining = count - step
        size = gradient_checks(pool, step, remaining)
        if size == remaining or remaining == 1:
            candidates = _candidates(chosen)
            if remaining == 1:
                _take(chosen, order, candidates[:, 0])
                continue
        else:
            guess = estimate(arange, chosen.clone()).masked_fill(chosen, -math.inf)
            ranked = guess.sort(dim=1, descending=True, stable=True).indices
            if size == 0:
                _take(chosen, order, ranked[:, 0])
                continue
            candidates = ranked[:, :size]
        values = _score_additions(score, chosen, candidates).to(torch.float64)
        trial = torch.full((n, count), -math.inf, dtype=torch.float64, device=device)
        _take(chosen, order, trial.scatter_(1, candidates, values).argmax(1))
    return torch.stack(order, 1)


def run_search(
    search: Search,
    score: SetScore,
    n: int,
    count: int,
    device: torch.device,
    *,
    pending: int,
    epsilon: float,
    seed: int,
    pool: int = 6,
    estimate: Estimate | None = None,
) -> Tensor:
    """The order ``(N, R)`` found by the search named ``search`` (its settings given)."""
    if search == "lazy":
        return lazy_greedy(score, n, count, device)
    if search == "stochastic":
        generator = torch.Generator().manual_seed(seed)
        return stochastic_greedy(score, n, count, device, epsilon=epsilon, generator=generator)
    if search == "bidirectional":
        return bidirectional_greedy(score, n, count, device, pending=pending)
    if search == "gradient":
        assert estimate is not None  # given by the method for this search
        return gradient_greedy(score, estimate, n, count, device, pool=pool)
    return greedy(score, n, count, device)
