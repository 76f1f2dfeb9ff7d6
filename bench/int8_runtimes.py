"""Other int8 runtimes against ours, for the record: is the int8 target a matter of runtime?

Times eager float32 (the reference), our int8 path (``Recognizer.load(dtype="int8")``:
torch's dynamic quantization + SDPA) and, when installed, two well-kept
alternatives on the same base-size random TimeSformer, round-robin in one
process, with logits cosine against float32:

- ONNX Runtime: the model exported with ``torch.onnx.export`` and quantized with
  ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, per tensor);
- torchao PT2E: ``torch.export`` + ``X86InductorQuantizer`` (static int8, calibrated
  on a few clips) + ``torch.compile`` with freezing, i.e. oneDNN int8 kernels with
  fused post-ops.

Neither is a project dependency (they did not pay, see BENCHMARKS.md), so install
them beside the project to run this:

    .venv/bin/pip install onnxruntime onnx torchao
    .venv/bin/python bench/int8_runtimes.py          # ~4 min on 2 cores (the compile takes ~1)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stream.model.random_weights import save_random_timesformer  # noqa: E402
from stream.model.recognizer import Recognizer  # noqa: E402


def onnxruntime_int8(model: torch.nn.Module, example: torch.Tensor, folder: Path, threads: int):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    torch.onnx.export(
        _Logits(model), (example,), str(fp32), input_names=["pixel_values"], output_names=["logits"], opset_version=17, dynamo=False
    )
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"pixel_values": x.numpy()})[0])


def torchao_pt2e_int8(model: torch.nn.Module, calibration: list[torch.Tensor]):
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    exported = torch.export.export(_Logits(model), (calibration[0],), strict=False).module()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    for clip in calibration:
        prepared(clip)
    converted = convert_pt2e(prepared)
    torch._inductor.config.freezing = True
    return torch.compile(converted)


class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    folder = Path(tempfile.mkdtemp(prefix="int8-runtimes-"))
    save_random_timesformer(folder / "base", "base")
    eager = Recognizer.load(str(folder / "base"), device="cpu", dtype="float32", attention="eager").model
    ours = Recognizer.load(str(folder / "base"), device="cpu", dtype="int8", attention="auto").model
    generator = torch.Generator().manual_seed(0)
    clips = [torch.randn(1, 8, 3, 224, 224, generator=generator) for _ in range(4)]
    example = clips[0]

    with torch.inference_mode():
        variants = {"eager fp32 (reference)": _Logits(eager), "ours: torch dynamic int8 + sdpa": _Logits(ours)}
    with torch.no_grad():
        for name, build in (
            ("onnxruntime dynamic int8", lambda: onnxruntime_int8(eager, example, folder, args.threads)),
            ("torchao pt2e static int8 + inductor", lambda: torchao_pt2e_int8(eager, clips)),
        ):
            start = time.perf_counter()
            try:
                variants[name] = build()
            except ImportError as exc:
                print(f"{name}: skipped ({exc.name} not installed)")
                continue
            print(f"{name}: built in {time.perf_counter() - start:.0f} s")

        reference = variants["eager fp32 (reference)"](example)
        cosine = {}
        for name, run in variants.items():
            got = run(example)  # also the warm-up (and the compile's first call)
            cosine[name] = float(torch.nn.functional.cosine_similarity(got.flatten(), reference.flatten(), 0))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, run in variants.items():
                start = time.perf_counter()
                run(example)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["eager fp32 (reference)"])
    print(f"\n{'variant':<40}{'median s':>9}{'min s':>8}{'vs eager':>9}{'cosine':>9}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<40}{med:>9.3f}{min(values):>8.3f}{med / base:>9.3f}{cosine[name]:>9.5f}")
    print(f"\n{args.runs} round-robin runs, {args.threads} threads; torch {torch.__version__}; load {np.round(np.array(__import__('os').getloadavg()), 2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
