"""The additive search of subset selection: its estimates, its checks, its cost, its limits."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import faithmap
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.methods.subset import additive
from faithmap.methods.subset.additive import ring_shares
from faithmap.methods.subset.smdl import Smdl
from faithmap.testing import method_checks


class CellLogits(nn.Module):
    """Logits linear in the means of the image's 4 x 4 cells: on a black fill, each kept cell
    adds its own vector to the logits, so the additive estimates are exact."""

    def __init__(self, cells: int, classes: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weights = nn.Parameter(4.0 * torch.randn(classes, cells, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        cells = nn.functional.avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1)
        return cells @ self.weights.T


def _case(size: int = 28, images: int = 2) -> tuple[CellLogits, Tensor]:
    model = CellLogits((size // 4) ** 2, 5, seed=0)
    x = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(1)) + 0.2
    return model, x


def _value(model: nn.Module, image: Tensor, keep: Tensor, target: int) -> float:
    """The objective (consistency + collaboration + confidence, black fill) of the subset of
    4 x 4 cells ``keep`` ``(R,)``, computed from its definition."""
    side = image.shape[-1] // 4
    mask = keep.view(1, 1, side, side).float().repeat_interleave(4, 2).repeat_interleave(4, 3)
    with torch.no_grad():
        inside = model(image[None] * mask).softmax(1)[0]
        outside = model(image[None] * (1 - mask)).softmax(1)[0]
    confidence = 1 + (inside * inside.log()).sum() / torch.log(torch.tensor(inside.shape[0]))
    return float(inside[target] + (1 - outside[target]) + confidence)


def test_with_exact_estimates_every_step_is_a_greedy_step_up_to_the_tolerance() -> None:
    """Each region taken scores within ``tolerance`` times the weights of the best candidate
    at that step, computed from the objective's definition for every candidate."""
    model, x = _case(size=16)
    found = faithmap.explain(model, x, method="smdl", regions="patches:4", search="additive")
    assert found.ranking is not None
    target = faithmap.Model(model).predict(x)
    for image in range(x.shape[0]):
        chosen = torch.zeros(16, dtype=torch.bool)
        for region in found.ranking[image].tolist():
            values = {}
            for candidate in (~chosen).nonzero().squeeze(1).tolist():
                trial = chosen.clone()
                trial[candidate] = True
                values[candidate] = _value(model, x[image], trial, int(target[image]))
            assert values[region] >= max(values.values()) - Smdl().tolerance * 3 - 1e-6
            chosen[region] = True


class TouchingPair(nn.Module):
    """Two classes read from the means of 4 x 4 cells: the target's logit is ``3 a + 2 c +
    4 a b`` for touching cells ``a`` (0) and ``b`` (1) and a far cell ``c`` (15), the other
    class's is 4. Cell 1 alone does nothing and with cell 0 the most: an interaction."""

    def forward(self, x: Tensor) -> Tensor:
        cells = nn.functional.avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1)
        a, b, c = cells[:, 0], cells[:, 1], cells[:, 15]
        target = 3.0 * a + 2.0 * c + 4.0 * a * b
        return torch.stack([target, torch.full_like(target, 4.0)], 1)


def test_the_interaction_of_touching_regions_is_found_by_probing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Greedy takes cell 0, then the touching cell 1 it interacts with; the additive estimate
    alone prefers the far cell 15, and probing the candidates touching the last pick finds 1."""
    model, x = TouchingPair(), torch.ones(1, 3, 16, 16)
    params: dict[str, Any] = {"regions": "patches:4", "target": 0}
    plain = faithmap.explain(model, x, method="smdl", search="greedy", **params)
    probed = faithmap.explain(model, x, method="smdl", search="additive", **params)
    monkeypatch.setattr(additive, "NEIGHBOURS", 0)
    estimated = faithmap.explain(model, x, method="smdl", search="additive", **params)
    assert plain.ranking is not None and probed.ranking is not None
    assert estimated.ranking is not None
    assert plain.ranking[0, :2].tolist() == [0, 1]
    assert probed.ranking[0, :2].tolist() == [0, 1]
    assert estimated.ranking[0, :2].tolist() == [0, 15]


def test_at_49_regions_it_makes_at_least_ten_times_fewer_passes_than_greedy() -> None:
    model, x = _case(size=28)
    found = faithmap.explain(
        model, x, method="smdl", target=0, regions="patches:4", search="additive"
    )
    plain = faithmap.explain(
        model, x, method="smdl", target=0, regions="patches:4", search="greedy"
    )
    assert plain.cost.passes >= 10 * found.cost.passes
    assert found.cost.backward == 0
    assert found.config["search"] == "additive"
    assert found.curves is not None and plain.curves is not None
    torch.testing.assert_close(
        found.curves["insertion"][:, [0, -1]], plain.curves["insertion"][:, [0, -1]]
    )


def test_declared_probabilities_give_the_same_order_as_the_logits() -> None:
    """The estimates are made on log-probabilities for a model that returns probabilities, and
    softmax ignores a per-row shift, so the order is that of the same model's logits."""
    model, x = _case(size=16)

    class Probabilities(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            logits: Tensor = model(x)
            return logits.softmax(1)

    params = {"regions": "patches:4", "search": "additive"}
    logits = faithmap.explain(model, x, method="smdl", target=1, **params)
    probabilities = faithmap.explain(
        faithmap.Model(Probabilities(), outputs="probabilities"),
        x,
        method="smdl",
        target=1,
        **params,
    )
    assert logits.ranking is not None and probabilities.ranking is not None
    assert torch.equal(logits.ranking, probabilities.ranking)


def test_ring_shares_count_the_surroundings_of_each_region() -> None:
    """Four 4 x 4 quadrants of an 8 x 8 image: a quadrant's surroundings (2 pixels deep) are 8
    pixels of each side neighbour and 4 of the diagonal one."""
    labels = torch.zeros(8, 8, dtype=torch.long)
    labels[:4, 4:], labels[4:, :4], labels[4:, 4:] = 1, 2, 3
    shares = ring_shares(labels[None], 4)[0]
    expected = torch.tensor(
        [[0.0, 0.4, 0.4, 0.2], [0.4, 0.0, 0.2, 0.4], [0.4, 0.2, 0.0, 0.4], [0.2, 0.4, 0.4, 0.0]]
    )
    torch.testing.assert_close(shares, expected)


def test_a_region_with_no_surroundings_has_no_shares() -> None:
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    assert torch.equal(ring_shares(labels, 3)[0], torch.zeros(3, 3))


def test_outputs_that_are_not_class_scores_are_refused() -> None:
    class Boxes(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.mean((1, 2, 3))[:, None, None].expand(-1, 3, 4)

    with pytest.raises(ModelError, match=r"\(B, C\) class scores.*search='greedy'"):
        faithmap.explain(
            Boxes(),
            torch.rand(1, 3, 16, 16),
            method="smdl",
            regions="patches:4",
            search="additive",
            target=lambda out: out[:, 0, 0],
        )


def test_the_tolerance_is_validated() -> None:
    with pytest.raises(InvalidParameterError, match="tolerance"):
        faithmap.get_method("smdl", search="additive", tolerance=-0.1)


PARAMS = {"regions": "slic:12", "search": "additive", "effectiveness": 1.0}


@pytest.mark.parametrize("check", [name for name, _ in method_checks("smdl", PARAMS)])
def test_the_additive_search_keeps_the_method_contract(check: str) -> None:
    """Shape, device, batch and sample independence, determinism ... with this search."""
    dict(method_checks("smdl", PARAMS))[check]()
