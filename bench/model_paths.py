"""Compare the model's CPU fast paths on a base-size random TimeSformer.

A thin wrapper: the logic now lives in ``stream.bench.model`` (section 2 of
``python -m stream bench``), which loads each path through Recognizer.load
and times eager float32, SDPA float32, int8 and int8+SDPA round-robin, with
logits cosine, top-5 overlap and top-1 agreement against eager float32.

    .venv/bin/python bench/model_paths.py            # about 2-3 minutes on 2 cores
    .venv/bin/python bench/model_paths.py --runs 3 --clips 4
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.bench import main as bench_main  # noqa: E402

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Same options as ``python -m stream bench`` (--runs, --clips, --threads, --json ...), model section only."""
    return bench_main(["--only", "model", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
