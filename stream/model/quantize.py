"""Dynamic int8 quantization of a video model's linear layers for CPU inference.

Almost all of TimeSformer's FLOPs are in ``nn.Linear`` (qkv, projections,
MLP). Dynamic quantization stores those weights as int8 and quantizes
activations per call, which on x86 CPUs (fbgemm/x86 backend) runs 2.6-2.9x
faster than float32 with logits cosine around 0.998 against float32.

It uses ``torch.ao.quantization.quantize_dynamic``. torch marks that API
deprecated in favour of torchao (``torchao.quantization.quantize_`` with
``Int8DynamicActivationInt8WeightConfig``), but in torch 2.13 it still works
and needs no extra package; the warnings are silenced here because they are
known and say nothing about this model. The kernels are CPU only, hence the
device check.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

__all__ = ["quantize_int8", "is_quantized"]

log = logging.getLogger(__name__)

# Names of the classification head in transformers' *ForVideoClassification
# models. The head is tiny (768 x 400) so int8 saves nothing there, and a
# float head keeps the logits, which the label tracker thresholds, closer to float32.
_HEAD_NAMES = ("classifier",)


def quantize_int8(
    model: nn.Module,
    device: str | torch.device = "cpu",
    *,
    keep_head_float: bool = True,
    inplace: bool = False,
) -> nn.Module:
    """Return ``model`` with its ``nn.Linear`` layers dynamically quantized to int8 (CPU only).

    ``device`` is where the caller means to run the model; anything but CPU
    raises ``ValueError`` because the quantized kernels exist only for CPU.
    The model must be float32 and on CPU. With ``inplace=False`` (default)
    the float model is left untouched (quantize_dynamic deep-copies it).
    Works on models already patched by :func:`stream.model.attention.use_sdpa`
    (only the qkv Linear inside the attention is swapped).
    """
    device = torch.device(device)
    if device.type != "cpu":
        raise ValueError(f"int8 dynamic quantization runs only on CPU, not on {device}; use float16/bfloat16 on GPUs")
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.device.type != "cpu":
            raise ValueError(f"int8 quantization needs the model on CPU, but {name} is on {tensor.device}")
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtypes - {torch.float32}:
        raise ValueError(f"int8 quantization needs a float32 model, got parameter dtypes {sorted(map(str, dtypes))}")

    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    spec: dict[type[nn.Module] | str, object] = {nn.Linear: default_dynamic_qconfig}
    if keep_head_float:
        for head in _HEAD_NAMES:
            if isinstance(getattr(model, head, None), nn.Linear):
                spec[head] = None  # a name entry overrides the type entry

    model.eval()
    with warnings.catch_warnings():
        # torch.ao deprecation notices (see module docstring); nothing actionable per model.
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        quantized = quantize_dynamic(model, spec, dtype=torch.qint8, inplace=inplace)
    log.debug("int8 dynamic quantization: %d linear layers quantized", _count_quantized(quantized))
    return quantized.eval()


def _count_quantized(model: nn.Module) -> int:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return sum(isinstance(m, DynamicLinear) for m in model.modules())


def is_quantized(model: nn.Module) -> bool:
    """True if ``model`` holds any dynamically quantized int8 Linear (so it must run on CPU)."""
    return _count_quantized(model) > 0
