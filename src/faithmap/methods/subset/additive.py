"""Additive greedy: greedy on class scores estimated from measured region effects.

Inserted into an image on a fill, regions act on a classifier's class scores (logits, or
log-probabilities) nearly additively: a convolutional network with global pooling sums local
evidence, and regions interact where their receptive fields overlap. The search measures each
region's effect on the class-score vector once at both ends of the search: with nothing around
it, ``z({r}) - z({})``, and with everything around it, ``z(V) - z(V \\ {r})`` (the complement
side measures it, ``2 R`` passes in all). At each step a candidate's effect is estimated from
the share ``a`` of its surroundings already in the subset ``S`` (:func:`ring_shares`): linearly
between its last measured effect (at the share it had then) and its effect with everything
around it, and likewise on the complement side. The far end is known only when the subset and
the complement are shown on the same fill; with two fills (a blur and black) each side keeps
its last measured effect. Every candidate's objective is then estimated
from the *measured* class scores of ``S`` and ``V \\ S`` plus its estimated effect, with no pass.

Candidates are then scored exactly, best estimate first, until the best exact value is within
``tolerance`` (a share of the objective's weights) of every remaining estimate, as lazy greedy
checks stale bounds (Minoux 1978), though estimates are not bounds here. Two kinds of candidate
are probed on the subset side only (one pass each, the complement side estimated; a probe that
comes within ``tolerance`` of the best exact value is then checked fully): the candidate of
highest estimated target log-probability when it is estimated to raise it by more than one nat
(insertion curves climb through probabilities far below the objective's resolution), and, for
the second and third picks, the four candidates touching the last pick (it covers part of their
surroundings) of highest estimated target probability. Interactions are local, where receptive
fields overlap, so the estimate misses them there; at the start of the search the subset is
mostly fill, they are strongest, and they decide whether the insertion curve rises early.
Among the checked candidates within ``tolerance`` of the best exact value, the one of highest
target probability is taken. Each exact score refreshes that candidate's measured effect in
the current context.

The subset and the complement of every step are the prefixes the recorded curves need, so
``R`` regions cost about ``2 + 4 R`` passes plus the extra checks and probes (200-220 in all at
``R = 49`` on the built-in models, against plain greedy's ``R (R + 1)``, about 2,200 with the
cache). It is an approximation of plain
greedy on a non-submodular objective; ``benchmarks/subset_search_eval.py`` measures its
insertion and deletion areas against greedy's on both fills.

References
----------
Chen et al., "Less is More: Efficient Black-box Attribution via Minimal Interpretable Subset
Selection", 2025 (the objective and plain greedy). Minoux, "Accelerated greedy algorithms for
maximizing submodular set functions", 1978 (checking the best estimate first). Lin, Chen, Yan,
"Network in Network", ICLR 2014 (global average pooling: class scores as sums of local
evidence).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from faithmap.methods.subset.objectives import Objective

Vectors = Callable[[int, Tensor, Tensor], Tensor]
"""``vectors(side, samples, keeps)``: the measured class scores of the subsets or complements."""
RISE = 1.0
"""A candidate estimated to raise the target log-probability by more than this (nats) is
probed."""
INTERACTING_PICKS = 2
"""The picks after the first during which the candidates touching the last pick are probed."""
NEIGHBOURS = 4
"""How many of them are probed per step: those of highest estimated target probability."""


def ring_shares(labels: Tensor, count: int) -> Tensor:
    """``(N, R, R)``: the share of region ``r``'s surroundings (the pixels within half a
    region's width of it, outside it) that region ``q`` covers; a row sums to 1 (0 for a region
    with no surroundings)."""
    height, width = labels.shape[-2:]
    reach = max(1, round(math.sqrt(height * width / count) / 2))
    shares = []
    for image in labels.reshape(-1, height, width):
        onehot = torch.nn.functional.one_hot(image, count).permute(2, 0, 1).float()
        grown = torch.nn.functional.max_pool2d(
            onehot[None], 2 * reach + 1, stride=1, padding=reach
        )[0]
        ring = (grown * (1.0 - onehot)).flatten(1)
        counts = ring @ onehot.flatten(1).T
        shares.append(counts / counts.sum(1, keepdim=True).clamp_min(1.0))
    return torch.stack(shares)


class _Effects:
    """Each region's measured effect on one side's class scores and how to extrapolate it.

    ``side`` 0 scores the subset ``S`` (an effect is ``z(S + r) - z(S)``), side 1 its complement
    (``z(V \\ (S + r)) - z(V \\ S)``). ``last`` holds the latest measured effect and ``at`` the
    share of the region's surroundings in ``S`` when it was measured; ``end`` is the effect with
    all the surroundings in ``S`` (``None``: not known, the last measurement is used).
    """

    def __init__(self, current: Tensor, singles: Tensor, end: Tensor | None) -> None:
        self.current = current
        self.last = singles - current[:, None]
        self.at = torch.zeros(singles.shape[:2], dtype=torch.float64, device=singles.device)
        self.end = end

    def estimate(self, candidates: Tensor, around: Tensor) -> Tensor:
        """Estimated class scores ``(N, k, C)`` of adding each of ``candidates`` ``(N, k)``."""
        index = candidates[:, :, None].expand(-1, -1, self.last.shape[2])
        effect = self.last.gather(1, index)
        if self.end is not None:
            at = self.at.gather(1, candidates)
            share = (around.gather(1, candidates) - at) / (1.0 - at).clamp_min(1e-6)
            share = share[:, :, None].to(effect.dtype)
            effect = effect + share * (self.end.gather(1, index) - effect)
        return self.current[:, None] + effect

    def measured(self, images: Tensor, regions: Tensor, scores: Tensor, around: Tensor) -> None:
        """Record the exact class scores of adding ``regions`` to the images' current subsets."""
        self.last[images, regions] = scores - self.current[images]
        self.at[images, regions] = around[images, regions]

    def advance(self, picks: Tensor) -> None:
        """Move every image's current scores to those with its pick added (measured)."""
        rows = torch.arange(picks.shape[0], device=picks.device)
        self.current = self.current + self.last[rows, picks]


def _added(chosen: Tensor, images: Tensor, regions: Tensor) -> Tensor:
    """The subsets ``(M, R)``: image ``images[m]``'s chosen regions plus ``regions[m]``."""
    trial = chosen[images].clone()
    trial[torch.arange(images.shape[0], device=images.device), regions] = True
    return trial


def _log(probability: Tensor) -> Tensor:
    return probability.clamp_min(1e-30).log()


def additive_greedy(
    objective: Objective, n: int, count: int, device: torch.device, *, tolerance: float
) -> Tensor:
    """The order ``(N, R)`` of greedy on the additive estimates of ``objective`` (see the
    module), checking candidates until the best exact value is within ``tolerance`` (times the
    sum of the weights) of every remaining estimate."""
    scores, weights = objective.scores, objective.weights
    scores.keep_vectors()
    scale = weights.consistency + weights.confidence + weights.collaboration
    sides = [0] if weights.consistency or weights.confidence else []
    sides += [1] if weights.collaboration else []
    arange = torch.arange(n, device=device)
    chosen = torch.zeros(n, count, dtype=torch.bool, device=device)

    def vectors(side: int, samples: Tensor, keeps: Tensor) -> Tensor:
        shown = keeps if side == 0 else ~keeps
        return scores.vectors_of(samples, shown, torch.full_like(samples, side))

    every = arange.repeat_interleave(count)
    singles = torch.eye(count, dtype=torch.bool, device=device).repeat(n, 1)
    start = {s: vectors(s, arange, chosen) for s in sides}
    alone = {s: vectors(s, every, singles).view(n, count, -1) for s in sides}
    both = len(sides) == 2 and scores.shared
    effects = {
        s: _Effects(start[s], alone[s], -(alone[1 - s] - start[1 - s][:, None]) if both else None)
        for s in sides
    }
    shares = ring_shares(scores.regions.labels.to(device), count).to(torch.float64)
    order: list[Tensor] = []
    for _ in range(count):
        remaining = count - len(order)
        candidates = (~chosen).nonzero()[:, 1].view(n, remaining)
        around = (shares @ chosen[:, :, None].to(shares.dtype)).squeeze(2)
        touching = None
        if 1 <= len(order) <= INTERACTING_PICKS:
            touching = shares[arange[:, None], candidates, order[-1][:, None]] > 0
        step = _Step(objective, chosen, candidates, effects, around, vectors)
        picks = step.run(tolerance * scale, touching)
        chosen[arange, picks] = True
        order.append(picks)
        for side in sides:
            effects[side].advance(picks)
    return torch.stack(order, 1)


class _Step:
    """One step of :func:`additive_greedy`: estimate every candidate, check, and pick."""

    def __init__(
        self,
        objective: Objective,
        chosen: Tensor,
        candidates: Tensor,
        effects: dict[int, _Effects],
        around: Tensor,
        vectors: Vectors,
    ) -> None:
        self.objective, self.scores, self.chosen = objective, objective.scores, chosen
        self.candidates, self.effects, self.around = candidates, effects, around
        self.vectors = vectors
        n, remaining = candidates.shape
        samples = torch.arange(n, device=chosen.device).repeat_interleave(remaining)
        keeps = _added(chosen, samples, candidates.reshape(-1))
        read = {
            side: self.scores.readouts_of(
                samples, effect.estimate(candidates, around).reshape(n * remaining, -1)
            )
            for side, effect in effects.items()
        }
        self.guess = objective.combine(samples, keeps, read.get(0), read.get(1)).view(n, -1)
        self.hoped = _log(read[0][:, 0]).view(n, -1) if 0 in read else None
        self.complement = read[1].view(n, remaining, 2) if 1 in read else None
        self.exact = torch.full_like(self.guess, -math.inf)
        self.probability = torch.zeros_like(self.guess)
        self.open = self.guess.clone()
        self.probed = torch.zeros_like(self.guess, dtype=torch.bool)

    def check(self, images: Tensor, positions: Tensor) -> None:
        """Score ``candidates[images, positions]`` exactly and refresh their effects."""
        regions = self.candidates[images, positions]
        trial = _added(self.chosen, images, regions)
        self.exact[images, positions] = self.objective(images, trial)
        self.open[images, positions] = -math.inf
        for side, effect in self.effects.items():
            fresh = self.vectors(side, images, trial)
            effect.measured(images, regions, fresh, self.around)
            if side == 0:
                self.probability[images, positions] = self.scores.readouts_of(images, fresh)[:, 0]

    def probe(self, images: Tensor, positions: Tensor, near: float) -> None:
        """Score candidates on the subset side only, their complement side estimated (one pass
        each); the best of each image is checked fully if that value comes within ``near`` of
        the image's best exact value, and the others stay open at that value."""
        if not images.numel():
            return
        if self.complement is None or 0 not in self.effects:
            self.check(images, positions)
            return
        self.probed[images, positions] = True
        regions = self.candidates[images, positions]
        trial = _added(self.chosen, images, regions)
        fresh = self.vectors(0, images, trial)
        self.effects[0].measured(images, regions, fresh, self.around)
        subset = self.scores.readouts_of(images, fresh)
        complement = self.complement[images, positions]
        value = self.objective.combine(images, trial, subset, complement).to(self.open.dtype)
        self.open[images, positions] = value
        best = torch.full_like(self.exact[:, 0], -math.inf).scatter_reduce(0, images, value, "amax")
        top = (value == best[images]) & (value >= self.exact.max(1).values[images] - near)
        if bool(top.any()):
            self.check(images[top], positions[top])

    def probe_touching(self, touching: Tensor, near: float) -> None:
        """Probe the ``NEIGHBOURS`` candidates of highest estimated target probability among
        those ``touching`` ``(N, k)`` the last pick and not yet scored."""
        assert self.hoped is not None
        key = torch.where(touching & (self.open > -math.inf) & ~self.probed, self.hoped, -math.inf)
        top = key.topk(min(NEIGHBOURS, key.shape[1]), 1)
        images, ranks = (top.values > -math.inf).nonzero(as_tuple=True)
        self.probe(images, top.indices[images, ranks], near)

    def run(self, tolerance: float, touching: Tensor | None) -> Tensor:
        """Check and probe candidates (see the module) and return each image's pick ``(N,)``;
        ``touching`` marks the candidates touching the last pick while their interactions
        are probed."""
        n = self.guess.shape[0]
        arange = torch.arange(n, device=self.guess.device)
        self.check(arange, self.guess.argmax(1))
        if self.hoped is not None:
            now = _log(self.scores.readouts_of(arange, self.effects[0].current)[:, 0])
            best = self.hoped.argmax(1)
            rising = (self.hoped[arange, best] > now + RISE) & (self.open[arange, best] > -math.inf)
            if bool(rising.any()):
                self.probe(arange[rising], best[rising], tolerance)
            if touching is not None:
                self.probe_touching(touching, tolerance)
        while True:
            looking = self.exact.max(1).values < self.open.max(1).values - tolerance
            if not bool(looking.any()):
                break
            images = looking.nonzero().squeeze(1)
            self.check(images, self.open[images].argmax(1))
        top = self.exact.max(1, keepdim=True).values
        ranked = self.exact if 0 not in self.effects else self.probability
        ranked = torch.where(self.exact >= top - tolerance, ranked, -math.inf)
        return self.candidates.gather(1, ranked.argmax(1, keepdim=True)).squeeze(1)
