"""Route TimeSformer's self-attention through ``scaled_dot_product_attention``.

transformers' ``TimesformerSelfAttention`` is hand-written ``q @ k^T`` ->
softmax -> ``@ v`` and has no ``attn_implementation`` switch. The same math
through :func:`torch.nn.functional.scaled_dot_product_attention` lets a GPU
pick flash / memory-efficient kernels (no (N, N) probability matrix in
memory). On CPU it is the same speed, so it is mostly for GPUs.

The patch is per instance: each attention module's class is swapped for a
subclass that only overrides ``forward``. The transformers class itself is
never touched, so an eager model and an SDPA model can live in one process
(the benchmark compares them), and patched models survive ``deepcopy``,
pickling and ``quantize_dynamic`` (which replaces ``qkv`` but keeps the
module around it).

Other models are left alone: VideoMAE already supports SDPA in transformers,
load it with ``VideoMAEForVideoClassification.from_pretrained(...,
attn_implementation="sdpa")`` instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.timesformer.modeling_timesformer import TimesformerSelfAttention

__all__ = ["SdpaTimesformerSelfAttention", "supports_sdpa", "use_sdpa", "use_eager"]


class SdpaTimesformerSelfAttention(TimesformerSelfAttention):
    """``TimesformerSelfAttention`` whose forward calls ``F.scaled_dot_product_attention``.

    Never constructed directly: :func:`use_sdpa` swaps an existing module's
    ``__class__`` to this one, so weights, hooks and device stay as they are.
    """

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor] | tuple[torch.Tensor, torch.Tensor]:
        if output_attentions:
            # SDPA never materialises the probabilities; the eager path does.
            return super().forward(hidden_states, output_attentions=True)

        batch_size, seq_len, channels = hidden_states.shape
        # Same layout as the eager code: (3, batch, heads, seq, head_dim).
        qkv = (
            self.qkv(hidden_states)
            .reshape(batch_size, seq_len, 3, self.num_heads, channels // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        query, key, value = qkv[0], qkv[1], qkv[2]
        # Eager applies nn.Dropout to the probabilities, which is a no-op in
        # eval mode; SDPA's dropout_p is not mode-aware, so gate it here.
        dropout_p = self.attn_drop.p if self.training else 0.0
        context = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, scale=self.scale)
        return (context.transpose(1, 2).reshape(batch_size, seq_len, channels),)


def _attention_modules(model: nn.Module) -> list[TimesformerSelfAttention]:
    return [m for m in model.modules() if isinstance(m, TimesformerSelfAttention)]


def supports_sdpa(model: nn.Module) -> bool:
    """True if :func:`use_sdpa` has TimeSformer attention to patch in ``model``."""
    return bool(_attention_modules(model))


def use_sdpa(model: nn.Module) -> int:
    """Make every TimeSformer self-attention in ``model`` use SDPA; return how many now do.

    The count includes modules patched by an earlier call, so calling twice is
    harmless and still returns the total (a divided space-time model has two
    per layer: temporal and spatial). Returns 0 for models without TimeSformer
    attention (VideoMAE: use ``attn_implementation="sdpa"`` when loading).
    Requesting ``output_attentions`` still works: those calls take the eager path.
    """
    modules = _attention_modules(model)
    for module in modules:
        if type(module) is TimesformerSelfAttention:
            module.__class__ = SdpaTimesformerSelfAttention
        elif not isinstance(module, SdpaTimesformerSelfAttention):
            # An unknown subclass may have its own forward; don't silently replace it.
            raise TypeError(f"cannot patch {type(module).__qualname__}: not the transformers attention class")
    return len(modules)


def use_eager(model: nn.Module) -> int:
    """Undo :func:`use_sdpa` in place; return how many modules were switched back."""
    count = 0
    for module in model.modules():
        if type(module) is SdpaTimesformerSelfAttention:
            module.__class__ = TimesformerSelfAttention
            count += 1
    return count
