"""``python -m stream``: predict on files, subscribe to a server, benchmark."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from stream.argtypes import positive_float, positive_int

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream", description="Live video action recognition.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="classify video files", description="Classify video files with a video model.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (mp4, avi, mov, mkv, webm, ...)")
    p.add_argument("--top-k", type=positive_int, default=None, help="labels to show (default: config top_k, 5)")
    p.add_argument("--model", default=None, help="hub id or local model folder (default: from the config)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: from the config)")
    p.add_argument("--dtype", default=None, help="auto, float32, float16, bfloat16 or int8 (default: from the config)")
    p.add_argument("--span-s", type=positive_float, default=None, help="seconds one clip covers (default: about 8.5)")
    p.add_argument("--stride-s", type=positive_float, default=None, help="print a timeline of clips every S seconds")
    p.add_argument("--clips", type=positive_int, default=3, help="clips averaged over a whole video (default 3)")
    p.add_argument("--config", default=None, help="YAML config file (default: configs/default.yaml)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_predict)

    from stream import bench, subscriber

    subscriber.add_parser(sub)
    bench.add_parser(sub)
    return parser


class _ProgressBar:
    """A decoding progress bar on a terminal (stream.video.read_frames calls it per decoded frame)."""

    def __init__(self, show: bool) -> None:
        self._show = show
        self._bar = None

    def factory(self, total: int) -> Callable[[int], None]:
        if self._show:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", desc="decoding", leave=False, file=sys.stderr)
        return self._update

    def _update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _cmd_predict(args: argparse.Namespace) -> int:
    from stream.config import ConfigError, load_config
    from stream.model import ModelUnavailableError, Recognizer
    from stream.predict import classify_video
    from stream.video import VideoError

    try:
        cfg = load_config(
            args.config,
            {
                "model.name": args.model,
                "model.device": args.device,
                "model.dtype": args.dtype,
                "window.span_s": args.span_s,
                "window.stride_s": args.stride_s,
                "top_k": args.top_k,
            },
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        recognizer = Recognizer.from_config(cfg)
    except ModelUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    failed = 0
    payload = []
    for path in args.videos:
        bar = _ProgressBar(show=sys.stderr.isatty() and not args.json)
        try:
            result = classify_video(
                recognizer,
                path,
                span_s=cfg.window.span_s,
                stride_s=args.stride_s,
                top_k=cfg.top_k,
                num_clips=args.clips,
                progress_factory=bar.factory,
            )
        except VideoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        finally:
            bar.close()
        if args.json:
            payload.append(result.to_json(timeline=args.stride_s is not None))
        else:
            _print_table(result, timeline=args.stride_s is not None)
    if args.json:
        print(json.dumps(payload if len(args.videos) > 1 else (payload[0] if payload else []), indent=2))
    return EXIT_USAGE if failed else 0


def _print_table(result, timeline: bool) -> None:
    info = result.info
    damaged = (
        f", {result.frames_substituted} of {result.frames_sampled} frames substituted" if result.frames_substituted else ""
    )
    print(
        f"{result.path}  ({info.duration_s:.1f} s, {info.width}x{info.height}, {info.fps:.1f} fps, "
        f"{len(result.clips)} clip{'s' if len(result.clips) != 1 else ''}{damaged})"
    )
    if timeline:
        for clip in result.clips:
            labels = ", ".join(f"{label} {score:.2f}" for label, score in clip.top_k[:3])
            print(f"  {clip.start_s:7.2f} - {clip.end_s:7.2f} s  {labels}")
        print("  overall:")
    width = max(len(label) for label, _ in result.top_k)
    for rank, (label, score) in enumerate(result.top_k, 1):
        print(f"  {rank:2d}. {label:<{width}}  {score:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("predict", "bench"):  # the commands that load models
        from stream.logs import quiet_libraries

        quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
