"""faithmap.generation: the explained object, prompt features and the attribution methods.

Oracles computed here, independently of the code under test: Hugging Face ``generate`` and
step-by-step log-probabilities, a causal model whose logits are a known linear function of the
prompt embeddings, brute-force Shapley values over every coalition (scored by the model with
``inputs_embeds``), the integrated-gradients completeness gap, eager attention read directly
from the model, and Captum's ``LLMAttribution``/``LLMGradientAttribution`` on the same model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import transformers
from torch import Tensor, nn

from faithmap.errors import (
    FaithmapError,
    FileProblemError,
    InvalidParameterError,
    ModelError,
    UnknownNameError,
)
from faithmap.generation import (
    CausalLM,
    explain_generation,
    make_continuation,
    make_prompt,
    prompt_features,
)
from faithmap.generation.continuation import tail_scores

transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: tiny models on a loaded 2-core machine run ~10x faster than with two
    spinning threads; restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


WORDS = ["<pad>", "<unk>", "<eos>", ".", *[f"w{i}" for i in range(60)]]
PROMPT = "w3 w17 w8. w40 w5 w22. w9"


def make_tokenizer() -> Any:
    """A word-level Hugging Face fast tokenizer over :data:`WORDS` (64 ids, no special tokens
    added to a text)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return transformers.PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )


def gpt2(layers: int = 2) -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=layers, n_embd=32, n_head=2, vocab_size=64, n_positions=64,
        bos_token_id=2, eos_token_id=2,
    )  # fmt: skip
    model: Any = transformers.GPT2LMHeadModel(config)
    return model.eval()


def llama() -> Any:
    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=64, max_position_embeddings=64,
        bos_token_id=2, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    model: Any = transformers.LlamaForCausalLM(config)
    return model.eval()


MODELS = {"gpt2": gpt2, "llama": llama}


def embeddings_of(model: Any, ids: Tensor) -> Tensor:
    with torch.no_grad():
        embedded: Tensor = model.get_input_embeddings()(ids)
    return embedded.detach()


def hf_step_scores(model: Any, prompt_embeds: Tensor, continuation: Tensor) -> Tensor:
    """Each step's log-probability, running the model on ``inputs_embeds`` (no hook)."""
    embeds = torch.cat([prompt_embeds, embeddings_of(model, continuation)])[None]
    with torch.no_grad():
        logits = model(inputs_embeds=embeds).logits[0]
    length = prompt_embeds.shape[0]
    log_probs = torch.log_softmax(logits[length - 1 : -1], dim=-1)
    return log_probs[torch.arange(continuation.shape[0]), continuation]


# --------------------------------------------------------------- the object explained
@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_generation_and_teacher_forcing_agree_with_hugging_face(name: str) -> None:
    model, tokenizer = MODELS[name](), make_tokenizer()
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    expected = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
        eos_token_id=None, pad_token_id=0,
    )[0, ids.shape[1]:]  # fmt: skip
    exp = explain_generation(
        model, PROMPT, tokenizer=tokenizer, max_new_tokens=6, batch_size=8, method="attention"
    )
    steps = exp.step_ids
    # generation stops at <eos> (id 2) as HF's would; compare up to it
    assert torch.equal(steps, expected[: steps.shape[0]])
    assert exp.continuation.generated == "greedy"
    # teacher forcing: every step's log-probability, step by step on growing prefixes
    by_prefix = []
    for s in range(steps.shape[0]):
        prefix = torch.cat([ids[0], steps[:s]])[None]
        with torch.no_grad():
            last = torch.log_softmax(model(prefix).logits[0, -1], dim=-1)
        by_prefix.append(last[steps[s]])
    torch.testing.assert_close(exp.scores, torch.stack(by_prefix), atol=1e-5, rtol=0)


def test_sampling_is_seeded_and_a_given_continuation_is_teacher_forced() -> None:
    model, tokenizer = gpt2(), make_tokenizer()
    lm = CausalLM(model, tokenizer=tokenizer)
    prompt = make_prompt(PROMPT, tokenizer)
    first = lm.generate(prompt.ids, 8, sample=True, seed=3)
    assert torch.equal(first, lm.generate(prompt.ids, 8, sample=True, seed=3))
    draws = {tuple(lm.generate(prompt.ids, 8, sample=True, seed=s).tolist()) for s in range(4)}
    assert len(draws) > 1
    exp = explain_generation(
        lm, PROMPT, continuation="w1 w2 w3", contrast="w4", method="feature_ablation",
        batch_size=8,
    )  # fmt: skip
    assert exp.step_tokens == ["w1", "w2", "w3"] and exp.continuation.generated == "given"
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"][0]
    # log p(A) - log p(B) with B = w4 (id 8) at every step, same prefixes as A
    steps = exp.step_ids
    with torch.no_grad():
        logits = model(torch.cat([ids, steps])[None]).logits[0, len(ids) - 1 : -1]
    log_probs = torch.log_softmax(logits, dim=-1)
    torch.testing.assert_close(exp.scores, log_probs[range(3), steps] - log_probs[:, 8])


# ----------------------------------------------------------------------- features
def test_features_words_sentences_spans_tokens() -> None:
    prompt = make_prompt(PROMPT, make_tokenizer())
    words = prompt_features(prompt, "words")
    assert words.names == ["w3", "w17", "w8.", "w40", "w5", "w22.", "w9"]
    assert words.labels.tolist() == [0, 1, 2, 2, 3, 4, 5, 5, 6]
    sentences = prompt_features(prompt, "sentences")
    assert sentences.names == ["w3 w17 w8.", "w40 w5 w22.", "w9"]
    assert sentences.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    spans = prompt_features(prompt, [(3, 6), (11, 17)])  # "w17", "w40 w5"
    assert spans.names == ["w17", "w40 w5"]
    assert spans.labels.tolist() == [-1, 0, -1, -1, 1, 1, -1, -1, -1]
    assert prompt_features(prompt, "tokens").count == 9
    keep = torch.tensor([[0.0, 1.0]])
    assert spans.token_keep(keep).tolist() == [[1, 0, 1, 1, 1, 1, 1, 1, 1]]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("paragraphs", "must be 'tokens'"), ([(5, 2)], "0 <= start < end"), ([(0, 99)], "<= 25")],
)
def test_bad_features_are_refused(spec: Any, message: str) -> None:
    prompt = make_prompt(PROMPT, make_tokenizer())
    with pytest.raises(InvalidParameterError, match=message):
        prompt_features(prompt, spec)


def test_bad_inputs_are_refused_with_the_fix() -> None:
    model = gpt2()
    with pytest.raises(InvalidParameterError, match="tokenizer"):
        explain_generation(model, PROMPT)
    with pytest.raises(InvalidParameterError, match="'words' need the prompt as text"):
        explain_generation(model, [4, 5, 6])
    with pytest.raises(UnknownNameError, match="feature_ablation"):
        explain_generation(model, [4, 5, 6], method="occlusionn")

    def callable_lm(ids: Tensor) -> Tensor:
        logits: Tensor = model(ids).logits
        return logits

    with pytest.raises(InvalidParameterError, match="plain callable"):
        explain_generation(callable_lm, [4, 5, 6], features="tokens", max_new_tokens=1)
    with pytest.raises(ModelError, match="token embeddings"):
        explain_generation(
            callable_lm, [4, 5, 6], features="tokens", baseline=0, max_new_tokens=1,
            method="integrated_gradients",
        )  # fmt: skip


# ------------------------------------------------------------------------ oracles
class LinearLM(nn.Module):
    """Logits at position t: ``W @ sum_{j <= t} e_j + b`` (causal, linear in the embeddings)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embedding = nn.Embedding(64, 8)
        self.head = nn.Linear(8, 64)

    def forward(self, ids: Tensor) -> Tensor:
        logits: Tensor = self.head(self.embedding(ids).cumsum(dim=1))
        return logits


def test_feature_ablation_is_exact_on_a_linear_model() -> None:
    model, tokenizer = LinearLM(), make_tokenizer()
    ids = tokenizer(PROMPT)["input_ids"]
    exp = explain_generation(
        model, PROMPT, tokenizer=tokenizer, continuation=[7, 9, 11], contrast=5,
        features="sentences", baseline="unk",
    )  # fmt: skip
    # contrastive target = logit_A - logit_B = (W_A - W_B) . (sum of embeddings) + const, so
    # removing a feature changes it by (W_A - W_B) . sum over its tokens of (e - e_unk)
    weight, table = model.head.weight.detach(), model.embedding.weight.detach()
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2]
    expected = torch.zeros(3, 3)
    for step, token in enumerate([7, 9, 11]):
        direction = weight[token] - weight[5]
        for position, label in enumerate(labels):
            expected[step, label] += direction @ (table[ids[position]] - table[1])
    torch.testing.assert_close(exp.attributions, expected, atol=1e-5, rtol=1e-5)
    assert exp.cost.forward == 1 + 3 + 1  # the scores, full prompt + one per feature


def brute_force_shapley(values: dict[tuple[int, ...], Tensor], count: int) -> Tensor:
    """Shapley values from the value of every coalition (a sorted tuple of kept features)."""
    phi = torch.zeros(count, *next(iter(values.values())).shape, dtype=torch.float64)
    for i in range(count):
        others = [j for j in range(count) if j != i]
        for size in range(count):
            weight = math.factorial(size) * math.factorial(count - size - 1) / math.factorial(count)
            for subset in itertools.combinations(others, size):
                with_i = tuple(sorted((*subset, i)))
                phi[i] += weight * (values[with_i].double() - values[subset].double())
    return phi.T


def test_kernel_shap_is_exact_against_brute_force_shapley_values() -> None:
    model, tokenizer = gpt2(), make_tokenizer()
    ids = torch.tensor(tokenizer(PROMPT)["input_ids"])
    exp = explain_generation(
        model, PROMPT, tokenizer=tokenizer, continuation="w1 w2 w3 w4", method="kernel_shap",
        features="words", baseline="pad", batch_size=32,
    )  # fmt: skip
    labels = exp.features.labels
    own, pad = embeddings_of(model, ids), embeddings_of(model, torch.tensor([0]))[0]
    count = exp.features.count
    assert count == 7
    values = {}
    for size in range(count + 1):
        for kept in itertools.combinations(range(count), size):
            keep = torch.isin(labels, torch.tensor(kept, dtype=torch.long))
            prompt = torch.where(keep[:, None], own, pad)
            values[kept] = hf_step_scores(model, prompt, exp.step_ids)
    expected = brute_force_shapley(values, count).float()
    torch.testing.assert_close(exp.attributions, expected, atol=2e-5, rtol=0)
    assert exp.cost.forward == 2**count + 1  # every coalition once, shared by the 4 steps


@pytest.mark.parametrize(
    ("name", "baseline", "steps"), [("gpt2", "zero", 64), ("llama", "pad", 256)]
)
def test_integrated_gradients_completeness_per_step(name: str, baseline: str, steps: int) -> None:
    # Gauss-Legendre with n nodes is exact for polynomials of degree 2n - 1; where the path is
    # smooth the quadrature error is then below float32 rounding, which bounds the sum of 9
    # token terms of size ~1 to about 1e-5 (4e-5 asserted). Llama's RMSNorm, x / sqrt(mean x^2 +
    # eps), bends sharply where the path between two tiny random embeddings passes near zero:
    # 64 nodes leave a 0.009 gap on its first step, 256 close it (measured: 0.110, 0.273, 0.263
    # at 16, 64, 256 nodes against a gap of 0.263).
    model, tokenizer = MODELS[name](), make_tokenizer()
    ids = torch.tensor(tokenizer(PROMPT)["input_ids"])
    exp = explain_generation(
        model, PROMPT, tokenizer=tokenizer, max_new_tokens=4, method="integrated_gradients",
        steps=steps, features="words", baseline=baseline, batch_size=64,
    )  # fmt: skip
    reference = torch.zeros(32) if baseline == "zero" else embeddings_of(model, torch.tensor(0))
    full = hf_step_scores(model, embeddings_of(model, ids), exp.step_ids)
    empty = hf_step_scores(model, reference.expand(len(ids), 32), exp.step_ids)
    gap = full - empty
    torch.testing.assert_close(exp.attributions.sum(1), gap, atol=4e-5, rtol=1e-5)
    # one pass per path point scores every step; one scores the prompt; one per generated token
    assert exp.cost.forward == steps + 1 + exp.step_ids.shape[0]
    assert exp.cost.backward == exp.step_ids.shape[0] * steps


def test_perturbation_on_a_callable_of_ids_equals_the_module_with_a_token_baseline() -> None:
    model, tokenizer = gpt2(), make_tokenizer()

    def callable_lm(ids: Tensor) -> Tensor:
        logits: Tensor = model(ids).logits
        return logits

    kwargs: dict[str, Any] = dict(tokenizer=tokenizer, continuation="w1 w2", baseline="unk")
    by_ids = explain_generation(callable_lm, PROMPT, **kwargs, batch_size=4)
    by_embeddings = explain_generation(model, PROMPT, **kwargs, batch_size=4)
    torch.testing.assert_close(by_ids.attributions, by_embeddings.attributions, atol=1e-5, rtol=0)


def test_attention_and_rollout_read_the_model_s_attention() -> None:
    model, tokenizer = gpt2(layers=1), make_tokenizer()
    ids = torch.tensor(tokenizer(PROMPT)["input_ids"])
    kwargs: dict[str, Any] = dict(tokenizer=tokenizer, continuation="w1 w2", features="tokens")
    raw = explain_generation(model, PROMPT, method="attention", **kwargs)
    rolled = explain_generation(model, PROMPT, method="attention_rollout", **kwargs)
    assert model.config._attn_implementation == "sdpa"  # restored after the eager pass
    model.set_attn_implementation("eager")
    with torch.no_grad():
        sequence = torch.cat([ids, raw.step_ids])[None]
        attention = model(sequence, output_attentions=True).attentions[0][0].mean(0)
    length = len(ids)
    rows = attention[length - 1 : length + 1, :length]
    torch.testing.assert_close(raw.attributions, rows)
    # one layer: rollout is 0.5 A + 0.5 I (rows of A sum to one)
    expected = 0.5 * rows
    expected[0, length - 1] += 0.5
    torch.testing.assert_close(rolled.attributions, expected)
    assert raw.cost.forward == 2


# ----------------------------------------------------------------------- contract
@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("feature_ablation", {}),
        ("kernel_shap", {"n_samples": 40}),
        ("lime", {"n_samples": 40}),
        ("integrated_gradients", {"steps": 8}),
        ("input_x_gradient", {}),
    ],
)
def test_deterministic_and_batch_size_invariant(method: str, params: dict[str, Any]) -> None:
    model, tokenizer = llama(), make_tokenizer()
    kwargs: dict[str, Any] = dict(tokenizer=tokenizer, max_new_tokens=3, method=method, **params)
    one = explain_generation(model, PROMPT, batch_size=1, **kwargs)
    again = explain_generation(model, PROMPT, batch_size=7, **kwargs)
    torch.testing.assert_close(one.attributions, again.attributions, atol=1e-5, rtol=1e-5)
    assert one.attributions.shape == (3, 7)
    assert one.config["seed"] == 0 and one.method == method
    assert len(one.top_features(2)) == 3


def test_the_model_is_left_as_it_was_found() -> None:
    model = gpt2()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]

    def failing(ids: Tensor) -> Tensor:
        raise RuntimeError("boom")

    explain_generation(
        model, [4, 5, 6, 7], features="tokens", method="integrated_gradients", steps=4,
        max_new_tokens=2, batch_size=4,
    )  # fmt: skip
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    with pytest.raises(FaithmapError, match="boom"):
        explain_generation(failing, [4, 5, 6], features="tokens", baseline=0, max_new_tokens=1)


# ------------------------------------------------------------------------- Captum
@pytest.mark.parametrize("name", sorted(MODELS))
def test_feature_ablation_agrees_with_captum_llm_attribution(name: str) -> None:
    from captum.attr import FeatureAblation, LLMAttribution, TextTokenInput

    model, tokenizer = MODELS[name](), make_tokenizer()
    target = torch.tensor([7, 9, 11])
    # Captum's per-token target: log p(target token s | prompt, target[:s]) with removed prompt
    # tokens replaced by the baseline id (0, <pad>); attribution = f(x) - f(x without token).
    # Its default forward_in_tokens=True with use_cached_outputs=True decodes with the KV cache
    # and differs from uncached teacher forcing by ~3e-3 on transformers 5.25 (measured); the
    # one-pass form and the uncached token-by-token form are both compared here.
    attribution = LLMAttribution(FeatureAblation(model), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer, baselines=0)
    one_pass = attribution.attribute(inp, target=target, forward_in_tokens=False)
    by_tokens = attribution.attribute(inp, target=target, use_cached_outputs=False)
    ours = explain_generation(
        model, PROMPT, tokenizer=tokenizer, continuation=target, features="tokens",
        baseline="pad", batch_size=16,
    )  # fmt: skip
    assert one_pass.token_attr is not None and by_tokens.token_attr is not None
    torch.testing.assert_close(ours.attributions, one_pass.token_attr, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.attributions, by_tokens.token_attr, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_integrated_gradients_agrees_with_captum_llm_gradient_attribution(name: str) -> None:
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    model, tokenizer = MODELS[name](), make_tokenizer()
    target = torch.tensor([7, 9, 11])
    # Captum integrates the embedding layer's output from the embedding of its default baseline
    # (token id 0, <pad>) with Gauss-Legendre, 50 steps, target log p(token s), summed over D.
    layer = LayerIntegratedGradients(model, model.get_input_embeddings())
    attribution = LLMGradientAttribution(layer, tokenizer)
    theirs = attribution.attribute(TextTokenInput(PROMPT, tokenizer), target=target, n_steps=50)
    ours = explain_generation(
        model, PROMPT, tokenizer=tokenizer, continuation=target, features="tokens",
        baseline="pad", method="integrated_gradients", steps=50, batch_size=50,
    )  # fmt: skip
    assert theirs.token_attr is not None
    torch.testing.assert_close(ours.attributions, theirs.token_attr, atol=1e-5, rtol=0)


def test_a_local_directory_loads_with_its_tokenizer(tmp_path: Any) -> None:
    model, tokenizer = gpt2(), make_tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    kwargs: dict[str, Any] = dict(continuation="w1 w2", features="words", batch_size=8)
    loaded = explain_generation(str(tmp_path), PROMPT, **kwargs)
    direct = explain_generation(model, PROMPT, tokenizer=tokenizer, **kwargs)
    torch.testing.assert_close(loaded.attributions, direct.attributions)
    with pytest.raises(FileProblemError, match="does not exist"):
        explain_generation(str(tmp_path / "missing"), PROMPT)


def test_attention_needs_a_hugging_face_model() -> None:
    with pytest.raises(ModelError, match="Hugging Face"):
        explain_generation(
            LinearLM(), [4, 5, 6], features="tokens", method="attention", max_new_tokens=1
        )


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(
    ("method", "params"),
    [("feature_ablation", {}), ("kernel_shap", {"n_samples": 40}), ("lime", {"n_samples": 40})],
)
def test_the_cached_prompt_prefix_gives_the_uncached_scores(
    name: str, method: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import faithmap.generation.scoring as scoring
    from faithmap.generation.prefix_cache import PrefixCache

    model, tokenizer = MODELS[name](), make_tokenizer()
    kwargs: dict[str, Any] = dict(
        tokenizer=tokenizer, continuation=[7, 9, 11], features="tokens", baseline="pad",
        method=method, batch_size=5, **params,
    )  # fmt: skip
    calls: list[int] = []
    original = PrefixCache.scores

    def counted(self: Any, blended: Tensor, first: Tensor, full: Any, *rest: Any) -> Tensor:
        calls.append(int((first > 0).sum()))  # rows that continue a cached prefix
        return original(self, blended, first, full, *rest)

    monkeypatch.setattr(PrefixCache, "scores", counted)
    cached = explain_generation(model, PROMPT, **kwargs)
    assert sum(calls) > 0
    monkeypatch.setattr(scoring, "caches_prefix", lambda lm: False)
    calls.clear()
    uncached = explain_generation(model, PROMPT, **kwargs)
    assert calls == []
    torch.testing.assert_close(cached.attributions, uncached.attributions, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached.scores, uncached.scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_per_step_output_layer_gives_the_joint_targets_and_gradients(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With autograd on, EmbeddingScorer applies the output layer to each step's hidden state on
    # its own (each backward pass then runs it on one slice); targets and gradients must equal
    # those of the joint (B, S, V) logits, here and through integrated gradients.
    import faithmap.generation.scoring as scoring

    model, tokenizer = MODELS[name](), make_tokenizer()
    lm = CausalLM(model, tokenizer=tokenizer)
    prompt = make_prompt(PROMPT, tokenizer)
    continuation = make_continuation(lm, prompt, continuation=[7, 9, 11, 4])
    scorer = scoring.EmbeddingScorer(lm, continuation)
    assert scoring.output_head(lm) is model.get_output_embeddings()
    embeddings = lm.embed(prompt.ids)[None].repeat(3, 1, 1)
    embeddings = embeddings + 0.1 * torch.randn(embeddings.shape, generator=torch.Generator())
    scorer.track_inputs = True
    split = scorer(embeddings.clone())
    assert scorer.step_targets is not None and len(scorer.step_targets) == 4
    rows = scorer.tracked
    assert rows is not None
    grads = [torch.autograd.grad(t.sum(), rows, retain_graph=True)[0] for t in scorer.step_targets]
    with torch.no_grad():
        joint = tail_scores(
            lm.logits(scorer.sequence[None].expand(3, -1), embeddings, last=4),
            continuation.ids, None,
        )  # fmt: skip
    torch.testing.assert_close(split, joint, atol=1e-6, rtol=0)
    for step, grad in enumerate(grads):
        leaf = embeddings.clone().requires_grad_(True)
        logits = lm.logits(scorer.sequence[None].expand(3, -1), leaf, last=4)
        target = tail_scores(logits, continuation.ids, None)[:, step]
        (expected,) = torch.autograd.grad(target.sum(), leaf)
        torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5)
    kwargs: dict[str, Any] = dict(
        tokenizer=tokenizer, continuation=[7, 9, 11], features="words", baseline="pad",
        method="integrated_gradients", steps=8,
    )  # fmt: skip
    per_step = explain_generation(model, PROMPT, **kwargs)
    monkeypatch.setattr(scoring, "output_head", lambda lm: None)
    together = explain_generation(model, PROMPT, **kwargs)
    torch.testing.assert_close(per_step.attributions, together.attributions, atol=1e-6, rtol=0)
    assert per_step.cost.forward == together.cost.forward
    assert per_step.cost.backward == together.cost.backward
