"""Text attributions on small, randomly initialised Hugging Face models (nothing downloaded).

Oracles: integrated gradients against the model run on token ids (completeness with the all-mask
text) and against Captum's LayerIntegratedGradients; word occlusion against the model run with a
word's ids replaced by the mask id; a model that adds one weight per token, whose word
attributions and deletion curves are known in closed form.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch
import transformers
from captum import attr as captum_attr
from torch import Tensor, nn

import faithmap
from faithmap.errors import InvalidParameterError
from faithmap.text import (
    explain_text,
    make_tokenizer,
    render_html,
    render_terminal,
    text_deletion,
    text_insertion,
    text_regions,
    tokenize,
)
from faithmap.text.render import POSITIVE

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "un", "##believ",
    "##able", ",", "very", "good", "!", "bad", "plot", "a", "<", ">", "b", "/", "&",
]  # fmt: skip
TEXT = "The movie was unbelievable, very good!"
WORDS = ["The", "movie", "was", "unbelievable", ",", "very", "good", "!"]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    # transformers 5 defines BertTokenizerFast (an alias of BertTokenizer) at runtime only.
    return transformers.BertTokenizerFast(  # type: ignore[attr-defined]
        vocab={w: i for i, w in enumerate(VOCAB)}
    )


@pytest.fixture(scope="module")
def bert() -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=3,  # type: ignore[call-arg]  # a PretrainedConfig keyword, not in BertConfig's
    )
    torch.manual_seed(0)
    model: nn.Module = transformers.BertForSequenceClassification(config)
    return model.eval()


def logits_of_ids(model: nn.Module, ids: Tensor) -> Tensor:
    with torch.no_grad():
        logits: Tensor = model(
            input_ids=ids[None], attention_mask=torch.ones_like(ids)[None]
        ).logits
        return logits[0]


class TokenWeights(nn.Module):
    """Class-1 logit = sum of one weight per token; class-0 logit = 0."""

    def __init__(self, vocabulary: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 1)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.linspace(-1.0, 2.0, vocabulary)[:, None])

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        total = (self.embedding(input_ids)[..., 0] * attention_mask).sum(1)
        return torch.stack([torch.zeros_like(total), total], 1)


def test_tokenize_groups_word_pieces(tokenizer: object) -> None:
    tokens = tokenize(tokenizer, TEXT)
    assert tokens.tokens[4:7] == ["un", "##believ", "##able"]
    assert tokens.words == WORDS
    assert tokens.word_spans[3] == (14, 26)
    assert tokens.special.tolist() == [True] + [False] * 10 + [True]
    assert tokens.word_of.tolist() == [-1, 0, 1, 2, 3, 3, 3, 4, 5, 6, 7, -1]


def test_text_regions(tokenizer: object) -> None:
    tokens = tokenize(tokenizer, TEXT)
    words = text_regions(tokens, "words")
    assert words.labels.shape == (1, 12, 1) and words.count == 8
    assert words.labels.flatten().tolist() == [0, 0, 1, 2, 3, 3, 3, 4, 5, 6, 7, 7]
    assert text_regions(tokens, "tokens").labels.flatten().tolist() == [
        0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9
    ]  # fmt: skip
    spans = text_regions(tokens, "spans:3")
    assert spans.count == 3
    assert spans.labels.flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]


def test_integrated_gradients_completeness(bert: nn.Module, tokenizer: object) -> None:
    explained = explain_text(bert, tokenizer, TEXT, target=1, steps=64, batch_size=32)
    tokens = explained.tokens
    masked = torch.where(tokens.special, tokens.input_ids, torch.tensor(4))
    gap = logits_of_ids(bert, tokens.input_ids)[1] - logits_of_ids(bert, masked)[1]
    assert explained.explanation.attributions.shape == (1, 1, 12, 1)
    assert explained.token_scores[tokens.special].abs().max() == 0
    assert float(explained.token_scores.sum()) == pytest.approx(float(gap), abs=2e-4)
    assert float(explained.word_scores.sum()) == pytest.approx(float(gap), abs=2e-4)
    assert explained.word_scores[3] == pytest.approx(float(explained.token_scores[4:7].sum()))


def test_integrated_gradients_match_captum(bert: nn.Module, tokenizer: object) -> None:
    explained = explain_text(bert, tokenizer, TEXT, target=2, steps=50, batch_size=64)
    ids = explained.tokens.input_ids[None]
    baseline = torch.where(explained.tokens.special[None], ids, torch.tensor(4))

    def forward(input_ids: Tensor) -> Tensor:
        logits: Tensor = bert(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
        return logits

    embeddings = cast(transformers.PreTrainedModel, bert).get_input_embeddings()
    reference = captum_attr.LayerIntegratedGradients(forward, embeddings)
    expected = reference.attribute(ids, baselines=baseline, target=2, n_steps=50).sum(-1)[0]
    torch.testing.assert_close(explained.token_scores, expected, atol=1e-5, rtol=1e-4)


def test_word_occlusion_is_the_drop_from_masking_ids(bert: nn.Module, tokenizer: object) -> None:
    explained = explain_text(bert, tokenizer, TEXT, method="occlusion", target=0, batch_size=16)
    tokens = explained.tokens
    clean = logits_of_ids(bert, tokens.input_ids)[0]
    drops = []
    for word in range(len(WORDS)):
        ids = torch.where(tokens.word_of == word, torch.tensor(4), tokens.input_ids)
        drops.append(clean - logits_of_ids(bert, ids)[0])
    torch.testing.assert_close(explained.word_scores, torch.stack(drops), atol=1e-5, rtol=1e-4)
    assert explained.explanation.cost.forward == len(WORDS) + 1


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("integrated_gradients", {"steps": 4}),
        ("input_x_gradient", {}),
        ("occlusion", {}),
        ("kernel_shap", {}),
    ],
)
def test_additive_model_closed_form(tokenizer: object, method: str, params: dict[str, Any]) -> None:
    model = TokenWeights(len(VOCAB))
    explained = explain_text(model, tokenizer, TEXT, method=method, target=1, **params)
    weights = model.embedding.weight[:, 0].detach()
    tokens = explained.tokens
    per_token = torch.where(tokens.special, 0.0, weights[tokens.input_ids] - weights[4])
    expected = torch.zeros(len(WORDS)).index_add_(
        0, tokens.word_of[~tokens.special], per_token[~tokens.special]
    )
    torch.testing.assert_close(explained.word_scores, expected, atol=1e-5, rtol=1e-5)


def test_text_curves_closed_form(tokenizer: object) -> None:
    model = TokenWeights(len(VOCAB))
    explained = explain_text(model, tokenizer, TEXT, method="occlusion", target=1)
    contributions = explained.word_scores.sort(descending=True).values
    with torch.no_grad():
        full = float(model(explained.tokens.input_ids[None], torch.ones(1, 12))[0, 1])
    deleted = text_deletion(explained, activation="logits")
    expected = full - torch.cat([torch.zeros(1), contributions.cumsum(0)])
    torch.testing.assert_close(deleted.curve[0], expected, atol=1e-5, rtol=1e-5)
    inserted = text_insertion(explained, activation="logits")
    empty = full - float(contributions.sum())
    expected = empty + torch.cat([torch.zeros(1), contributions.cumsum(0)])
    torch.testing.assert_close(inserted.curve[0], expected, atol=1e-5, rtol=1e-5)
    assert deleted.curve.shape == (1, len(WORDS) + 1)


def test_batch_size_does_not_change_the_result(bert: nn.Module, tokenizer: object) -> None:
    one = explain_text(bert, tokenizer, TEXT, steps=8, batch_size=1)
    many = explain_text(bert, tokenizer, TEXT, steps=8, batch_size=64)
    torch.testing.assert_close(one.token_scores, many.token_scores, atol=1e-6, rtol=1e-5)
    wrapped = explain_text(faithmap.Model(bert, batch_size=3), tokenizer, TEXT, steps=8)
    assert wrapped.model.batch_size == 3
    torch.testing.assert_close(one.token_scores, wrapped.token_scores, atol=1e-6, rtol=1e-5)


def test_model_left_as_found(bert: nn.Module, tokenizer: object) -> None:
    bert.train()
    frozen = cast(nn.Linear, bert.classifier).weight
    frozen.requires_grad_(False)
    try:
        explain_text(bert, tokenizer, TEXT, steps=4, batch_size=8)
        explain_text(bert, tokenizer, TEXT, method="lime", n_samples=8, batch_size=8)
        assert all(m.training for m in bert.modules())
        assert not frozen.requires_grad
        assert all(p.requires_grad for n, p in bert.named_parameters() if n != "classifier.weight")
        assert not cast(transformers.PreTrainedModel, bert).get_input_embeddings()._forward_hooks
    finally:
        frozen.requires_grad_(True)
        bert.eval()


def test_lima_ranks_words(bert: nn.Module, tokenizer: object) -> None:
    explained = explain_text(bert, tokenizer, TEXT, method="lima", pending=2, batch_size=32)
    ranking = explained.explanation.ranking
    assert ranking is not None and sorted(ranking[0].tolist()) == list(range(len(WORDS)))
    first = int(ranking[0, 0])
    assert explained.word_scores[first] == explained.word_scores.max() == len(WORDS)


def test_render_html_escapes_and_colours(tokenizer: object) -> None:
    model = TokenWeights(len(VOCAB))
    text = "a <b>bad</b> & good plot"
    explained = explain_text(model, tokenizer, text, method="occlusion", target=1)
    page = render_html(explained, title="<script>")
    assert "<b>" not in page and "<script>" not in page
    assert '">&lt;</span>' in page and '">&amp;</span>' in page and "&lt;script&gt;" in page
    best = int(explained.word_scores.argmax())
    score = float(explained.word_scores[best])
    assert explained.words[best] == "&"  # the heaviest token of TokenWeights
    assert f'rgb{POSITIVE}; padding: 0 1px; border-radius: 2px" title="{score:+.4g}">&amp;<' in page


def test_render_terminal(tokenizer: object) -> None:
    model = TokenWeights(len(VOCAB))
    explained = explain_text(model, tokenizer, TEXT, method="occlusion", target=1)
    coloured = render_terminal(explained)
    assert coloured.count("\x1b[48;2;") == len(WORDS)
    plain = render_terminal(explained, colour=False)
    assert "\x1b" not in plain
    scores = explained.word_scores.tolist()
    assert plain.startswith(f"The[{scores[0]:+.3g}] movie[{scores[1]:+.3g}]")


def test_bad_input_raises(bert: nn.Module, tokenizer: object) -> None:
    with pytest.raises(InvalidParameterError, match="fast tokenizer"):
        explain_text(bert, object(), TEXT)
    with pytest.raises(InvalidParameterError, match="'regions' parameter for a text"):
        explain_text(bert, tokenizer, TEXT, method="occlusion", regions="sentences")
    with pytest.raises(InvalidParameterError, match="cannot be set for a text"):
        explain_text(bert, tokenizer, TEXT, method="occlusion", fill=0.5)
    with pytest.raises(InvalidParameterError, match="'baseline' parameter for a text"):
        explain_text(bert, tokenizer, TEXT, baseline="cls")
    with pytest.raises(InvalidParameterError, match="no word to explain"):
        explain_text(bert, tokenizer, "   ")
    with pytest.raises(InvalidParameterError, match="embedding"):
        explain_text(bert, tokenizer, TEXT, embedding="no.such.layer")
    assert make_tokenizer().mask_token_id == 2
