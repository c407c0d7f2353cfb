"""Scores of region subsets through the model: batched, cached, every pass counted.

A subset ``K`` of an image's regions is rendered as the image keeping exactly those regions
(the rest replaced by the fill) and scored once: its target probability and its confidence are
read from the same forward pass and cached, so no subset is run twice, and the complement of
``S`` (the image keeping ``V \\ S``) is just another subset. The complement may be rendered on
a fill of its own (the deletion side, as a deletion metric removes to black while insertion
starts from a blur); it then has its own cache. Empty regions (labels an image does not use) do
not change the rendered image, so they are left out of the cache key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from faithmap.core.model import Model
from faithmap.core.regions import Regions
from faithmap.core.removal import blend
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError, ModelError

Confidence = Literal["entropy", "evidential"]


@dataclass(frozen=True)
class _Readout(Target):
    """Reads ``(score of the target, confidence)`` from one batch of raw outputs.

    For a class target the score is the class probability and the confidence is read from the
    whole class distribution (LiMA's ``1 - H(p) / log K`` or SMDL's evidential form). A
    callable target (a detector's box score, a regression output) has no class distribution:
    its score is read from the probabilities for class-score outputs ``(B, C)`` and from the
    raw outputs otherwise, and the confidence term is that same score clipped to [0, 1], so the
    objective rewards subsets the model is sure of *for the target*, as VPS does for boxes.
    """

    model: Model | None = None
    form: Confidence = "entropy"
    vectors: list[Tensor] | None = None

    def select(self, output: Tensor, samples: Tensor) -> Tensor:
        assert self.model is not None  # set by SubsetScores, not user input
        if self.vectors is not None:
            self.vectors.append(to_log_space(output, self.model))
        target = Target(self.classes, self.score_fn, self.score_fns)
        if self.classes is None:
            raw: object = output  # a detector's dicts or lists reach the callable as they are
            class_scores = isinstance(raw, Tensor) and output.dim() == 2
            read = self.model.activate(output, "softmax") if class_scores else output
            score = target.select(read, samples)
            return torch.stack([score, score.clamp(0.0, 1.0)], 1)
        probs = self.model.activate(output, "softmax")
        score = target.select(probs, samples)
        classes = output.shape[1]
        if self.form == "evidential":
            evidence = output.clamp(-10.0, 10.0).exp() + 1.0
            confidence = 1.0 - classes / evidence.sum(1)
        else:
            entropy = -(probs * (probs + 1e-7).log()).sum(1)
            scale = math.log(classes) if classes > 1 else 1.0
            confidence = 1.0 - entropy / scale
        return torch.stack([score, confidence], 1)


@dataclass(frozen=True)
class _Mixed(_Readout):
    """``mix[0] * score + mix[1] * confidence`` per row (the differentiable part of the
    objective on one side), keeping the detached ``(score, confidence)`` rows in ``seen``."""

    mix: tuple[float, float] = (1.0, 0.0)
    seen: list[Tensor] | None = None

    def select(self, output: Tensor, samples: Tensor) -> Tensor:
        both = super().select(output, samples)
        if self.seen is not None:
            self.seen.append(both.detach())
        return both[:, 0] * self.mix[0] + both[:, 1] * self.mix[1]


_R = TypeVar("_R", bound=_Readout)


def to_log_space(output: Tensor, model: Model) -> Tensor:
    """Class scores ``(B, C)`` as additive log-space vectors: logits as they are, probabilities
    and log-probabilities as log-probabilities (softmax ignores a per-row constant, so deltas of
    either add up the same way). Other outputs have no such form and are refused."""
    raw: object = output
    if not isinstance(raw, Tensor) or output.dim() != 2:
        what = model.structured or f"outputs of shape {tuple(getattr(raw, 'shape', ()))}"
        raise ModelError(
            f"The additive search estimates a subset's class scores from those of its regions, "
            f"so it needs (B, C) class scores; the model returns {what}. Use search='greedy'."
        )
    if model.outputs_kind == "probabilities":
        return output.clamp_min(torch.finfo(output.dtype).tiny).log().detach()
    return output.detach()


def from_log_space(vectors: Tensor, model: Model) -> Tensor:
    """The raw outputs whose :func:`to_log_space` form is ``vectors`` (up to a per-row shift)."""
    if model.outputs_kind == "probabilities":
        return vectors.softmax(dim=1)
    if model.outputs_kind == "log_probabilities":
        return vectors.log_softmax(dim=1)
    return vectors


def _embedding_layer(module: nn.Module, name: str | None) -> tuple[nn.Module, bool]:
    """The layer whose output (or, for ``None``, the last ``nn.Linear`` whose input) embeds."""
    if name is not None:
        try:
            return module.get_submodule(name), False
        except AttributeError as err:
            raise InvalidParameterError(
                f"The 'embedding' layer {name!r} is not a submodule of the model. Give a dotted "
                "name from model.named_modules(), e.g. 'features'."
            ) from err
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidParameterError(
            "The effectiveness term needs region embeddings, and the model has no nn.Linear "
            "layer whose input could serve. Name a layer with embedding='...' or set "
            "effectiveness=0."
        )
    return linears[-1], True


class SubsetScores:
    """Cached readouts ``(probability, confidence)`` of subsets of each image's regions.

    Parameters
    ----------
    model, inputs, target, substrate, regions
        The model, the images ``(N, C, H, W)`` on its device, their resolved target, the fill
        (same shape as the inputs) and the regions.
    complement_substrate : Tensor or None
        The fill of subsets scored on the complement side (``side=1``); ``None``: ``substrate``,
        and both sides share one cache.
    confidence : {"entropy", "evidential"}
        ``1 - H(p) / log K`` (LiMA) or ``1 - K / sum(exp(clamp(z, -10, 10)) + 1)`` (SMDL's
        evidential form, for models whose outputs are evidential logits).
    embedding : str or None, or False
        Where the embeddings of single-region images are read (see :func:`_embedding_layer`);
        ``False`` when no embedding is needed.
    """

    def __init__(
        self,
        model: Model,
        inputs: Tensor,
        target: Target,
        substrate: Tensor,
        regions: Regions,
        *,
        confidence: Confidence,
        embedding: str | Literal[False] | None,
        complement_substrate: Tensor | None = None,
    ) -> None:
        if confidence == "evidential" and model.outputs_kind != "logits":
            raise InvalidParameterError(
                "The evidential confidence needs the model's logits, but the model returns "
                "probabilities. Use confidence_form='entropy'."
            )
        self.model, self.inputs, self.target = model, inputs, target
        self.shared = complement_substrate is None
        other = substrate if complement_substrate is None else complement_substrate
        self.substrates = torch.stack([substrate, other])
        self.regions, self.form = regions, confidence
        self.nonempty = regions.sizes() > 0
        self.cache: list[dict[bytes, tuple[float, float]]] = [{} for _ in range(len(regions))]
        self.vectors: list[dict[bytes, Tensor]] | None = None
        self.layer: tuple[nn.Module, bool] | None = None
        self.embeddings: Tensor | None = None
        if embedding is not False:
            if not isinstance(model.module, nn.Module):
                raise ModelError(
                    "The effectiveness term reads region embeddings from a layer, but the model "
                    "is a plain callable. Set effectiveness=0 or wrap an nn.Module."
                )
            self.layer = _embedding_layer(model.module, embedding)
            self.have = torch.zeros_like(self.nonempty)

    def _keys(self, samples: Tensor, keeps: Tensor, sides: Tensor) -> list[bytes]:
        canonical = (keeps & self.nonempty[samples]).cpu().numpy()
        packed = np.packbits(canonical, axis=1)
        return [
            bytes([side]) + row.tobytes() for side, row in zip(sides.tolist(), packed, strict=True)
        ]

    def readouts(self, samples: Tensor, keeps: Tensor, sides: Tensor | None = None) -> Tensor:
        """``(M, 2)``: target probability and confidence of each subset; misses in one call.

        ``sides`` ``(M,)`` is 0 for subsets rendered on the fill and 1 for those rendered on the
        complement's fill (``None``: all 0).
        """
        keys = self._scored(samples, keeps, sides)
        found = [
            self.cache[sample][key] for sample, key in zip(samples.tolist(), keys, strict=True)
        ]
        return torch.tensor(found, dtype=torch.float64, device=samples.device)

    def _scored(self, samples: Tensor, keeps: Tensor, sides: Tensor | None) -> list[bytes]:
        """The cache keys of the subsets, after scoring those not in the cache in one call."""
        if sides is None or self.shared:
            sides = torch.zeros_like(samples)
        keys = self._keys(samples, keeps, sides)
        missing: dict[tuple[int, bytes], int] = {}
        for m, (sample, key) in enumerate(zip(samples.tolist(), keys, strict=True)):
            if key not in self.cache[sample]:
                missing.setdefault((sample, key), m)
        if missing:
            picked = torch.tensor(list(missing.values()), device=samples.device)
            values = self._run(samples[picked], keeps[picked], sides[picked]).tolist()
            for (sample, key), value in zip(missing, values, strict=True):
                self.cache[sample][key] = (value[0], value[1])
        return keys

    def keep_vectors(self) -> None:
        """From now on, keep each scored subset's class scores in log space (see
        :func:`to_log_space`) for :meth:`vectors_of`; subsets scored before are run again."""
        if self.vectors is None:
            self.vectors = [{} for _ in range(len(self.regions))]
            self.cache = [{} for _ in range(len(self.regions))]

    def vectors_of(self, samples: Tensor, keeps: Tensor, sides: Tensor) -> Tensor:
        """``(M, C)`` log-space class scores of each subset (scoring the misses in one call);
        needs :meth:`keep_vectors` first."""
        assert self.vectors is not None  # keep_vectors() is called by the search that needs it
        keys = self._scored(samples, keeps, sides)
        found = [self.vectors[s][k] for s, k in zip(samples.tolist(), keys, strict=True)]
        return torch.stack(found).to(samples.device)

    def _readout(self, samples: Tensor, kind: type[_R], **extra: Any) -> _R:
        """A readout of ``kind`` for rows of images ``samples``, reading this cache's target."""
        target = self.target.subset(samples)
        return kind(
            target.classes,
            target.score_fn,
            target.score_fns,
            model=self.model,
            form=self.form,
            **extra,
        )

    def readouts_of(self, samples: Tensor, vectors: Tensor) -> Tensor:
        """``(M, 2)``: target probability and confidence read from log-space class scores
        ``vectors`` ``(M, C)`` as from the model's outputs (no pass)."""
        readout = self._readout(samples, _Readout)
        raw = from_log_space(vectors, self.model).to(self.inputs.dtype)
        rows = torch.arange(samples.shape[0], device=samples.device)
        return readout.select(raw, rows).to(torch.float64)

    def first_order(
        self, samples: Tensor, keeps: Tensor, mixes: tuple[tuple[float, float], float]
    ) -> Tensor:
        """First-order estimates ``(M, R)`` of the change of the objective when each region
        joins ``keeps`` (``(M, R)`` bool), from one forward and one backward pass per side.

        ``mixes`` is ``((consistency, confidence), collaboration)``: the subset side's readout
        ``consistency * p_y + confidence * conf`` and the complement side's ``-collaboration *
        p_y`` are differentiated with respect to a soft region mask ``m`` at ``keeps``
        (the subset's image is ``lerp(fill, x, m)``, the complement's ``lerp(fill', x, 1 - m)``),
        and the gradient is summed over each region's pixels. The readouts of both images go
        into the cache, so the subset ``keeps`` is scored at no further pass. A side of weight 0
        costs nothing; every pass is counted in the model's ledger (backward ones too).
        """
        estimate = torch.zeros(keeps.shape, dtype=torch.float64, device=keeps.device)
        (consistency, confidence), collaboration = mixes
        for side, mix, keep in (
            (0, (consistency, confidence), keeps),
            (1, (-collaboration, 0.0), ~keeps),
        ):
            if not any(mix):
                continue
            code = 0 if self.shared else side
            seen: list[Tensor] = []
            readout = self._readout(samples, _Mixed, mix=mix, seen=seen)
            pixels = keep.to(self.inputs.dtype)
            substrate = self.substrates[code]
            sign = 1.0 if side == 0 else -1.0

            def rows(
                index: Tensor, _: Tensor, pixels: Tensor = pixels, sub: Tensor = substrate
            ) -> Tensor:
                image = samples[index]
                return blend(
                    self.inputs[image], sub[image], self.regions.to_pixels(pixels[index], image)
                )

            def consume(
                index: Tensor,
                _: Tensor,
                __: Tensor,
                gradients: Tensor,
                sub: Tensor = substrate,
                sign: float = sign,
            ) -> None:
                image = samples[index]
                along = (gradients * (self.inputs[image] - sub[image])).sum(1).flatten(1)
                labels = self.regions.labels[image].flatten(1)
                per_region = torch.zeros(index.shape[0], keeps.shape[1], device=along.device)
                per_region.scatter_add_(1, labels, along.float())
                estimate[index] += sign * per_region.double().to(estimate.device)

            self.model.gradient_rows(
                samples.shape[0],
                1,
                rows,
                readout,
                consume,
                activation="logits",
                device=samples.device,
            )
            values = torch.cat(seen).tolist()
            sides = torch.full_like(samples, code)
            for sample, key, value in zip(
                samples.tolist(), self._keys(samples, keep, sides), values, strict=True
            ):
                self.cache[sample].setdefault(key, (value[0], value[1]))
        return estimate

    def _run(self, samples: Tensor, keeps: Tensor, sides: Tensor) -> Tensor:
        """Score ``M`` subsets through the model in one call, reading embeddings if needed."""
        vectors: list[Tensor] | None = None if self.vectors is None else []
        readout = self._readout(samples, _Readout, vectors=vectors)
        pixels = keeps.to(self.inputs.dtype)

        def rows(index: Tensor, _: Tensor) -> Tensor:
            image = samples[index]
            keep = self.regions.to_pixels(pixels[index], image)
            return blend(self.inputs[image], self.substrates[sides[index], image], keep)

        captured: list[Tensor] = []
        handle = None
        if self.layer is not None:
            layer, reads_input = self.layer
            if reads_input:
                handle = layer.register_forward_pre_hook(
                    lambda _, args: captured.append(args[0].detach().flatten(1))
                )
            else:
                handle = layer.register_forward_hook(
                    lambda _, __, out: captured.append(out.detach().flatten(1))
                )
        try:
            values = self.model.score_rows(
                samples.shape[0], 1, rows, readout, activation="logits", device=samples.device
            )
        finally:
            if handle is not None:
                handle.remove()
        if vectors is not None:
            assert self.vectors is not None
            keys = self._keys(samples, keeps, sides)
            for sample, key, vector in zip(samples.tolist(), keys, torch.cat(vectors), strict=True):
                self.vectors[sample][key] = vector
        if captured:
            features = torch.cat(captured)[-samples.shape[0] :]
            on_fill = sides == 0
            self._store_embeddings(samples[on_fill], keeps[on_fill], features[on_fill])
        return values.view(-1, 2)

    def _store_embeddings(self, samples: Tensor, keeps: Tensor, features: Tensor) -> None:
        single = (keeps & self.nonempty[samples]).sum(1) == 1
        if not bool(single.any()):
            return
        if self.embeddings is None:
            shape = (*self.nonempty.shape, features.shape[1])
            self.embeddings = torch.zeros(shape, dtype=features.dtype, device=features.device)
        image, region = samples[single], (keeps & self.nonempty[samples])[single].float().argmax(1)
        self.embeddings[image, region] = features[single].to(self.embeddings.device)
        self.have[image, region] = True

    def distances(self) -> Tensor:
        """``(N, R, R)`` arccos distances over pi between single-region embeddings.

        Single-region images a search has not scored yet are scored here, in one call.
        """
        missing = (self.nonempty & ~self.have).nonzero()
        if missing.shape[0]:
            keeps = torch.zeros(
                missing.shape[0], self.regions.count, dtype=torch.bool, device=missing.device
            )
            keeps[torch.arange(missing.shape[0]), missing[:, 1]] = True
            self.readouts(missing[:, 0], keeps)
        assert self.embeddings is not None  # every image has a non-empty region
        unit = torch.nn.functional.normalize(self.embeddings.double(), dim=2)
        cosine = (unit @ unit.transpose(1, 2)).clamp(-1.0, 1.0)
        return torch.arccos(cosine) / math.pi
