"""Finding and loading a checkpoint, with errors that say what to do.

A checkpoint is a hub id (``facebook/timesformer-base-finetuned-k400``) or a
local folder holding ``config.json``, the weights and
``preprocessor_config.json``. When the hub cannot be reached we say so once,
quickly (not after minutes of retries), and point at ``--model ./folder``.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

__all__ = ["ModelUnavailableError", "resolve_device", "resolve_dtype", "load_checkpoint"]

log = logging.getLogger(__name__)

_HOW_TO = (
    "download it on a machine with internet access "
    "(`hf download {name} --local-dir ./models/{short}`), copy the folder here, "
    "and pass --model ./models/{short} (or set model.name in the config)"
)


class ModelUnavailableError(RuntimeError):
    """The checkpoint could not be found or loaded; the message says how to fix it."""


def _is_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so an offline machine fails in seconds, not minutes."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an unusual cache layout only means "not cached"
        return False


def _unavailable(name: str, why: str) -> ModelUnavailableError:
    short = name.rstrip("/").split("/")[-1] or "model"
    return ModelUnavailableError(f"cannot load model '{name}': {why}; " + _HOW_TO.format(name=name, short=short))


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> cuda if present, else cpu; ``cuda:N`` is checked against the GPUs present."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelUnavailableError(f"device '{spec}' asked for, but this torch build sees no CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelUnavailableError(
                f"device '{spec}' asked for, but only {torch.cuda.device_count()} CUDA device(s) are present"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ModelUnavailableError(f"device '{spec}' asked for, but MPS is not available; use --device cpu")
    return device


def resolve_dtype(spec: str, device: torch.device) -> tuple[torch.dtype, bool]:
    """(compute dtype, int8-quantized?) for a dtype spec on a device."""
    if spec == "int8":
        if device.type != "cpu":
            raise ModelUnavailableError("dtype int8 is a CPU path; on a GPU use float16 or bfloat16")
        return torch.float32, True
    if spec == "auto":
        if device.type == "cuda":
            return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), False
        if device.type == "cpu":
            # Dynamic int8 runs 2.6-2.9x faster than float32 on a CPU with logits
            # cosine ~0.998 (BENCHMARKS.md): what makes a 1 s stride possible there.
            return torch.float32, True
        return torch.float32, False
    return getattr(torch, spec), False


def load_checkpoint(name: str) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """Load (model in eval mode, preprocessor config dict, resolved location) for a hub id or folder."""
    from transformers import AutoConfig, AutoModelForVideoClassification
    from transformers.image_processing_utils import ImageProcessingMixin

    path = Path(name).expanduser()
    local = path.is_dir()
    if not local and (path.exists() or name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)):
        raise ModelUnavailableError(
            f"cannot load model '{name}': no such folder (a local model is a folder with config.json, "
            "the weights and preprocessor_config.json)"
        )
    location = str(path) if local else name
    kwargs: dict[str, Any] = {}
    if not local:
        if _cached(name):
            kwargs["local_files_only"] = True
        elif _is_offline():
            raise _unavailable(name, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
        elif not _hub_reachable():
            raise _unavailable(name, "this machine could not reach the Hugging Face hub to download it")
    else:
        missing = [f for f in ("config.json", "preprocessor_config.json") if not (path / f).is_file()]
        if missing:
            raise ModelUnavailableError(f"cannot load model '{name}': the folder has no {' or '.join(missing)}")
    try:
        config = AutoConfig.from_pretrained(location, **kwargs)
        model = AutoModelForVideoClassification.from_pretrained(location, config=config, **kwargs)
        processor_dict, _ = ImageProcessingMixin.get_image_processor_dict(location, **kwargs)
    except ValueError as exc:  # an Auto class that does not know this architecture
        raise ModelUnavailableError(f"cannot load model '{name}': not a video-classification checkpoint ({exc})") from None
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if local:
            raise ModelUnavailableError(f"cannot load model '{name}': {first}") from None
        raise _unavailable(name, f"the download failed or no such model exists on the hub ({first})") from None
    model.eval()
    return model, processor_dict, location
