"""SMDL and LiMA through the model: known orders, pass counts, curves, state, seeds."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torch import Tensor, nn

import faithmap
from faithmap import Model
from faithmap.bench.config import BenchConfig
from faithmap.core.regions import patch_grid, prior_groups
from faithmap.core.targets import Target
from faithmap.methods.subset.evaluator import SubsetScores
from faithmap.metrics import highest_confidence


class RegionWeights(nn.Module):
    """Two-class probabilities: ``p_0`` is the weighted share of the image's pixel mass kept.

    On an all-ones image with patches of 2 px and fill 0, keeping a set of patches gives
    ``p_0 = sum of their weights / total`` exactly, so region importance is known.
    """

    pixel_weights: Tensor

    def __init__(self, weights: Tensor, side: int) -> None:
        super().__init__()
        cells = weights.view(side, side).repeat_interleave(2, 0).repeat_interleave(2, 1)
        self.register_buffer("pixel_weights", cells / cells.sum())

    def forward(self, x: Tensor) -> Tensor:
        share = (x[:, 0] * self.pixel_weights).sum((1, 2))
        return torch.stack([share, 1.0 - share], 1)


def known(side: int = 3, seed: int = 4) -> tuple[Model, Tensor, Tensor]:
    """The model, one all-ones image, and the region weights (distinct, positive)."""
    weights = torch.rand(side * side, generator=torch.Generator().manual_seed(seed)) + 0.1
    net = RegionWeights(weights, side).double()
    image = torch.ones(1, 1, 2 * side, 2 * side, dtype=torch.float64)
    return Model(net, outputs="probabilities"), image, weights.double()


ADDITIVE = {"regions": "patches:2", "consistency": 1.0, "collaboration": 1.0, "confidence": 0.0}
SEARCHES = [
    ("smdl", {"search": "greedy"}),
    ("smdl", {"search": "lazy"}),
    ("smdl", {"search": "bidirectional", "pending": 3}),
    ("smdl", {"search": "stochastic", "epsilon": 1e-9}),
    ("lima", {"pending": 3}),
]


@pytest.mark.parametrize(("name", "params"), SEARCHES)
def test_every_search_ranks_regions_by_their_known_importance(
    name: str, params: dict[str, object]
) -> None:
    model, image, weights = known()
    result = faithmap.explain(model, image, method=name, target=0, **ADDITIVE, **params)
    expected = weights.argsort(descending=True)
    assert result.ranking is not None
    assert torch.equal(result.ranking[0], expected)
    # The rank map gives the first region 9 and the last 1.
    top, bottom = int(expected[0]), int(expected[-1])
    assert result.attributions[0, 0, 2 * (top // 3), 2 * (top % 3)] == 9
    assert result.attributions[0, 0, 2 * (bottom // 3), 2 * (bottom % 3)] == 1
    # Recorded curves: the kept share of the weights, known in closed form.
    kept = torch.cat([torch.zeros(1), weights[expected].cumsum(0)]) / weights.sum()
    torch.testing.assert_close(result.curves["insertion"][0], kept.double())
    torch.testing.assert_close(result.curves["deletion"][0], 1.0 - kept.double())
    torch.testing.assert_close(result.curves["area"][0], torch.arange(10, dtype=torch.float64) / 9)


def test_the_complement_is_scored_on_its_own_fill() -> None:
    """With removed regions at 0.5 on the deletion side, keeping all but S gives 1 - k(S) / 2."""
    model, image, weights = known()
    same = faithmap.explain(model, image, method="lima", target=0, **ADDITIVE, pending=3)
    result = faithmap.explain(
        model, image, method="lima", target=0, **ADDITIVE, pending=3, complement_fill=0.5
    )
    expected = weights.argsort(descending=True)
    assert result.ranking is not None
    assert torch.equal(result.ranking[0], expected)
    kept = torch.cat([torch.zeros(1), weights[expected].cumsum(0)]) / weights.sum()
    torch.testing.assert_close(result.curves["insertion"][0], kept.double())
    torch.testing.assert_close(result.curves["deletion"][0], 1.0 - kept.double() / 2)
    # Naming the fill itself as the complement's changes nothing, and costs no extra pass.
    again = faithmap.explain(
        model, image, method="lima", target=0, **ADDITIVE, pending=3, complement_fill=0.0
    )
    assert again.ranking is not None and same.ranking is not None
    assert torch.equal(again.ranking, same.ranking)
    assert again.cost.forward == same.cost.forward
    torch.testing.assert_close(again.curves["deletion"], same.curves["deletion"])


def test_a_chosen_class_is_explained_by_its_own_evidence() -> None:
    """Class 1 gains from removing weight: its order is the reverse of class 0's."""
    model, image, weights = known()
    result = faithmap.explain(model, image, method="lima", target=1, pending=3, **ADDITIVE)
    assert result.ranking is not None
    assert torch.equal(result.ranking[0], weights.argsort())


class Grid(nn.Module):
    """A small MLP over 7 x 7 images (49 one-pixel regions), with a linear head to embed."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(147, 16), nn.Tanh())
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(self.body(x))
        return logits


ALL_TERMS = {
    "regions": "patches:1",
    "consistency": 1.0,
    "collaboration": 1.0,
    "confidence": 1.0,
    "effectiveness": 1.0,
}


def test_plain_greedy_costs_n_times_n_plus_one_with_every_term_on() -> None:
    """The reference scores 2 images per candidate per step: N (N + 1) passes.

    The cache saves exactly 4: at step N - 1 both subsets ``S + c`` are complements of single
    regions and both complements are single regions, all scored at step 1. The recorded curves
    and the effectiveness embeddings (read from the single-region passes) cost nothing more.
    """
    x = torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    result = faithmap.explain(Grid(), x, method="smdl", target=0, **ALL_TERMS)
    assert result.cost.forward == 2 * (49 * 50 - 4)


def dossier_bidirectional(n: int, p: int) -> int:
    """LiMA's search-only count from the dossier (§4.4), with P' = P back candidates a step."""
    steps = -(-(n - p) // 2)
    left = n - 2 * steps
    return 2 * sum(n - 2 * t for t in range(steps)) + 2 * p * steps + left * (left + 1) - 2


@pytest.mark.parametrize(("n_side", "pending"), [(7, 8), (5, 4)])
def test_bidirectional_pass_count_matches_the_dossier(n_side: int, pending: int) -> None:
    """Formula minus the first back step (its sets are single regions, just scored on the
    front side: 2P saved by the cache) plus the curve's two end points (empty and full image,
    part of the reference's N + 3 set-up passes)."""
    n = n_side * n_side
    x = torch.rand(1, 3, 7, 7, generator=torch.Generator().manual_seed(1))[..., :n_side, :n_side]
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * n, 5))
    result = faithmap.explain(
        net, x, method="lima", target=0, regions="patches:1", pending=pending, effectiveness=1.0
    )
    assert dossier_bidirectional(49, 8) == 1608  # the dossier's table: 1,566-1,608
    assert result.cost.forward == dossier_bidirectional(n, pending) - 2 * pending + 2


class FailsAfter(nn.Module):
    def __init__(self, net: nn.Module, calls: int) -> None:
        super().__init__()
        self.net, self.calls, self.limit = net, 0, calls
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls >= self.limit:
            raise RuntimeError("simulated failure")
        out: Tensor = self.dropout(self.net(x))
        return out


@pytest.mark.parametrize("name", ["smdl", "lima"])
def test_an_exception_mid_search_leaves_the_model_as_it_was(name: str) -> None:
    failing = FailsAfter(Grid(), calls=40).train()
    cast(nn.Linear, failing.net.head).weight.requires_grad_(False)
    x = torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(2))
    with pytest.raises(faithmap.ModelError, match="simulated failure"):
        faithmap.explain(Model(failing, batch_size=8), x, method=name, target=0, **ALL_TERMS)
    assert failing.calls == 40  # it failed well inside the search
    assert all(m.training for m in failing.modules())
    assert [p.requires_grad for p in failing.parameters()] == [True, True, False, True]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in failing.modules())


def test_same_seed_same_ranking() -> None:
    x = torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(3))
    net = Grid()

    def ranking(seed: int) -> Tensor:
        params = {**ALL_TERMS, "search": "stochastic", "seed": seed}
        ranks = faithmap.explain(net, x, method="smdl", target=0, **params).ranking
        assert ranks is not None
        return ranks

    assert torch.equal(ranking(3), ranking(3))
    assert not torch.equal(ranking(3), ranking(4))


def test_highest_confidence_reads_the_recorded_curve_within_each_budget() -> None:
    model, image, weights = known()
    result = faithmap.explain(model, image, method="lima", target=0, pending=3, **ADDITIVE)
    scores = highest_confidence(model, image, result)
    kept = weights.sort(descending=True).values.cumsum(0) / weights.sum()
    # Budgets 25/50/75/100 % of 9 equal regions allow 2, 4, 6 and 9 of them.
    torch.testing.assert_close(scores.highest[0], kept[[1, 3, 5, 8]].double())
    torch.testing.assert_close(scores.area[0], torch.tensor([2, 4, 6, 9]).double() / 9)
    assert scores.recorded and scores.cost.forward == 0


def test_highest_confidence_of_a_pixel_map_runs_the_insertion_path() -> None:
    model, image, weights = known()
    pixel_map = weights.view(3, 3).repeat_interleave(2, 0).repeat_interleave(2, 1)
    scores = highest_confidence(model, image, pixel_map[None, None], target=0, steps=36)
    assert not scores.recorded and scores.cost.forward == 37
    # 36 steps of one pixel each: the best point within p is the first int(36 p) pixels.
    pixel_weights = pixel_map.flatten().sort(descending=True).values
    shares = pixel_weights.cumsum(0) / pixel_weights.sum()
    torch.testing.assert_close(scores.highest[0], shares[[8, 17, 26, 35]].double())


def test_prior_groups_put_the_most_salient_patches_in_region_zero() -> None:
    x = torch.rand(1, 3, 16, 16)
    prior = torch.zeros(1, 1, 16, 16)
    prior[..., 8:, 8:] = 1.0  # bottom-right patch first
    prior[..., :8, 8:] = 0.5  # then top-right
    regions = prior_groups(x, prior, size=8, group=2)
    assert regions.count == 2
    assert regions.labels[0, ::8, ::8].tolist() == [[1, 0], [1, 0]]


def test_bad_weights_are_refused_with_a_fix() -> None:
    with pytest.raises(faithmap.InvalidParameterError, match="must be > 0"):
        faithmap.get_method("lima", consistency=0, collaboration=0, confidence=0)
    with pytest.raises(faithmap.InvalidParameterError, match="'search'"):
        faithmap.get_method("smdl", search="exhaustive")


class Constant(nn.Module):
    """Returns the same logits for every input."""

    logits: Tensor

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits.expand(x.shape[0], -1)


@pytest.mark.parametrize("form", ["entropy", "evidential"])
def test_confidence_forms_match_their_formulas(form: str) -> None:
    logits = [2.0, 0.0, -1.0, 11.0]
    x = torch.rand(1, 3, 4, 4)
    scores = SubsetScores(
        Model(Constant(logits)),
        x,
        Target(classes=torch.tensor([0])),
        torch.zeros_like(x),
        patch_grid(x, 2),
        confidence=form,  # type: ignore[arg-type]
        embedding=False,
    )
    read = scores.readouts(torch.tensor([0]), torch.tensor([[True, False, True, False]]))
    p = [torch.e**z / sum(torch.e**v for v in logits) for z in logits]
    if form == "entropy":
        entropy = -sum(q * torch.log(torch.tensor(q + 1e-7)) for q in p)
        expected = 1.0 - float(entropy) / torch.log(torch.tensor(4.0))
    else:  # evidence exp(clamp(z, -10, 10)) + 1, uncertainty K / sum
        expected = 1.0 - 4.0 / sum(torch.e ** min(max(z, -10.0), 10.0) + 1.0 for z in logits)
    torch.testing.assert_close(read[0, 0].item(), p[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(read[0, 1].item(), float(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("search", "read"),
    [
        ("greedy", set()),
        ("lazy", set()),
        ("hierarchical", set()),
        ("bidirectional", {"pending"}),
        ("stochastic", {"epsilon", "seed"}),
        ("gradient", {"pool"}),
        ("spatial", {"cells"}),
        ("additive", {"tolerance"}),
    ],
)
def test_the_record_holds_only_the_search_settings_the_search_reads(
    search: str, read: set[str]
) -> None:
    settings = {"pending", "epsilon", "seed", "pool", "cells", "tolerance"}
    config = faithmap.get_method("smdl", search=search).config()
    assert settings & set(config) == read
    assert config["search"] == search and config["regions"] == "slic:49"


def test_an_unread_search_setting_leaves_the_benchmark_identity_alone() -> None:
    def bench(**params: object) -> BenchConfig:
        lima = {"regions": "slic:16", **params}
        return BenchConfig(models=["cnn"], methods=["lima"], method_params={"lima": lima})

    assert bench(tolerance=0.5).hash == bench().hash  # LiMA's bidirectional search: unread
    assert bench(pending=3).hash != bench().hash
