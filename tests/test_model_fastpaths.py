"""SDPA attention and int8 quantization give the eager float32 model's answers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import TimesformerConfig, TimesformerForVideoClassification
from transformers.models.timesformer.modeling_timesformer import TimesformerSelfAttention

from stream.model.attention import SdpaTimesformerSelfAttention, supports_sdpa, use_eager, use_sdpa
from stream.model.quantize import is_quantized, quantize_int8

LAYERS = 2
FRAMES = 8
SIZE = 32


def tiny_config(**overrides) -> TimesformerConfig:
    settings = dict(
        image_size=SIZE,
        patch_size=8,
        num_frames=FRAMES,
        hidden_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=12,
    )
    settings.update(overrides)
    return TimesformerConfig(**settings)


def tiny_model(seed: int = 0, **overrides) -> TimesformerForVideoClassification:
    torch.manual_seed(seed)
    model = TimesformerForVideoClassification(tiny_config(**overrides)).eval()
    # Random init gives near-uniform logits; widen the head so top-1 is decisive.
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)
    return model


def smooth_clips(count: int, seed: int = 1) -> torch.Tensor:
    """Upsampled low-res noise: image-like clips rather than white noise."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(count * FRAMES, 3, 4, 4, generator=gen)
    return F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False).reshape(
        count, FRAMES, 3, SIZE, SIZE
    )


@pytest.fixture(scope="module")
def eager() -> TimesformerForVideoClassification:
    return tiny_model()


@pytest.fixture(scope="module")
def sdpa(eager) -> TimesformerForVideoClassification:
    model = copy.deepcopy(eager)
    use_sdpa(model)
    return model


@pytest.fixture
def sdpa_calls(monkeypatch) -> list[tuple[int, ...]]:
    """Record the query shape of every F.scaled_dot_product_attention call."""
    calls: list[tuple[int, ...]] = []
    real = F.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        calls.append(tuple(query.shape))
        return real(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def logits(model, clips: torch.Tensor, **kwargs):
    with torch.no_grad():
        return model(pixel_values=clips, **kwargs).logits


def test_sdpa_logits_match_eager_float32(eager, sdpa, sdpa_calls):
    """SDPA float32 logits equal eager logits within 1e-4, and SDPA really ran."""
    clips = smooth_clips(3)
    expected, got = logits(eager, clips), logits(sdpa, clips)
    assert len(sdpa_calls) == 2 * LAYERS
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_use_sdpa_patches_temporal_and_spatial_attention_of_every_layer(eager):
    """use_sdpa counts and patches exactly the two attentions (temporal + spatial) per layer."""
    model = copy.deepcopy(eager)
    expected = [
        m
        for layer in model.timesformer.encoder.layer
        for m in (layer.temporal_attention.attention, layer.attention.attention)
    ]
    assert supports_sdpa(model)
    assert use_sdpa(model) == len(expected) == 2 * LAYERS
    assert all(type(m) is SdpaTimesformerSelfAttention for m in expected)
    assert use_sdpa(model) == 2 * LAYERS  # idempotent: still reports the total
    assert use_eager(model) == 2 * LAYERS
    assert all(type(m) is TimesformerSelfAttention for m in expected)


def test_eager_model_in_same_process_is_unaffected(eager, sdpa, sdpa_calls):
    """Patching one model leaves another model's attention (and the transformers class) eager."""
    assert sdpa is not eager
    assert all(type(m) is TimesformerSelfAttention for m in eager.modules() if isinstance(m, TimesformerSelfAttention))
    assert TimesformerSelfAttention.forward is not SdpaTimesformerSelfAttention.forward
    logits(eager, smooth_clips(1))
    assert sdpa_calls == []


def test_output_attentions_falls_back_to_eager(eager, sdpa):
    """output_attentions=True on the SDPA model returns the eager probabilities."""
    clips = smooth_clips(1)
    with torch.no_grad():
        expected = eager(pixel_values=clips, output_attentions=True)
        got = sdpa(pixel_values=clips, output_attentions=True)
    tokens = (SIZE // 8) ** 2 + 1
    assert len(got.attentions) == LAYERS
    assert got.attentions[0].shape == (FRAMES, 4, tokens, tokens)
    for want, have in zip(expected.attentions, got.attentions):
        torch.testing.assert_close(have, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=0)


def test_attention_dropout_only_in_training_mode():
    """With attention dropout set, SDPA matches eager in eval mode and drops out in train mode."""
    eager = tiny_model(attention_probs_dropout_prob=0.5)
    model = copy.deepcopy(eager)
    use_sdpa(model)
    clips = smooth_clips(1)
    torch.testing.assert_close(logits(model, clips), logits(eager, clips), atol=1e-4, rtol=0)
    model.train()
    torch.manual_seed(0)
    first = logits(model, clips)
    assert not torch.allclose(first, logits(model, clips))


def test_non_timesformer_models_are_left_alone():
    """use_sdpa returns 0 for VideoMAE (it has attn_implementation) and touches nothing."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    config = VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3,
    )  # fmt: skip
    model = VideoMAEForVideoClassification(config)
    classes = [type(m) for m in model.modules()]
    assert not supports_sdpa(model)
    assert use_sdpa(model) == 0
    assert [type(m) for m in model.modules()] == classes


def test_int8_logits_agree_with_float32(eager):
    """int8 logits have cosine >= 0.99 with float32 and the same top-1 on every clip."""
    quantized = quantize_int8(eager)
    assert is_quantized(quantized) and not is_quantized(eager)  # the float model is not modified
    assert type(quantized.classifier) is torch.nn.Linear  # head kept in float by default
    clips = smooth_clips(6, seed=3)
    reference, got = logits(eager, clips), logits(quantized, clips)
    assert F.cosine_similarity(reference, got, dim=-1).min() >= 0.99
    assert torch.equal(reference.argmax(-1), got.argmax(-1))


def test_int8_on_top_of_sdpa_agrees_with_float32(eager, sdpa, sdpa_calls):
    """Quantizing an SDPA-patched model keeps SDPA and still agrees with float32 eager."""
    quantized = quantize_int8(sdpa, keep_head_float=False)
    assert is_quantized(quantized.classifier) and is_quantized(quantized)
    clips = smooth_clips(4, seed=5)
    reference, got = logits(eager, clips), logits(quantized, clips)
    assert len(sdpa_calls) == 2 * LAYERS
    assert F.cosine_similarity(reference, got, dim=-1).min() >= 0.99


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("meta")])
def test_int8_rejects_non_cpu_device(eager, device):
    """quantize_int8 raises ValueError when asked for any device but the CPU."""
    with pytest.raises(ValueError, match="only on CPU"):
        quantize_int8(eager, device)


def test_int8_rejects_non_float32_model(eager):
    """quantize_int8 raises ValueError for a half-precision model instead of failing deep in torch."""
    with pytest.raises(ValueError, match="float32"):
        quantize_int8(copy.deepcopy(eager).to(torch.bfloat16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_sdpa_on_cuda_agrees_with_float32(eager, dtype):
    """On a GPU, float16/bfloat16 + SDPA logits have cosine >= 0.99 with CPU float32 eager."""
    model = copy.deepcopy(eager).to("cuda", dtype)
    assert use_sdpa(model) == 2 * LAYERS
    clips = smooth_clips(4, seed=7)
    reference = logits(eager, clips)
    got = logits(model, clips.to("cuda", dtype)).float().cpu()
    assert F.cosine_similarity(reference, got, dim=-1).min() >= 0.99
    assert torch.equal(reference.argmax(-1), got.argmax(-1))
