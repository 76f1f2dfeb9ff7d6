"""`predict` and the file source on hostile media: damaged, rotated, a FIFO, too large; the 403 wording."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import av.error
import pytest

from stream.cli import main
from stream.sources._av import classify_av_error, open_video
from stream.sources.errors import FatalSourceError
from tests.support.videos import damage_file, make_halves_video, make_video


def test_predict_on_damaged_video_reports_substitutions(tmp_path, tiny_model_dir):
    """A real predict process on a damaged MP4: exit 0, the JSON counts the stand-ins, stderr names the share."""
    video = damage_file(make_video(tmp_path / "damaged.mp4", fps=30, seconds=5))
    proc = subprocess.run(
        [sys.executable, "-m", "stream", "predict", str(video), "--model", tiny_model_dir, "--json", "--span-s", "2.8"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    sampled, substituted = data["frames_sampled"], data["frames_substituted"]
    # Before decoding went past damage, 14 of these 24 frames were copies of the last good one.
    assert sampled == 24 and 0 < substituted < 6
    share = f"{substituted} of {sampled} sampled frames ({100 * substituted / sampled:.0f}%)"
    warnings = [line for line in proc.stderr.splitlines() if share in line]
    assert len(warnings) == 1 and "nearest decoded neighbour" in warnings[0]


def test_predict_json_counts_zero_for_clean_video(tmp_path, tiny_model_dir, capsys):
    """A clean video's JSON says every sampled frame was decoded (frames_substituted 0)."""
    video = make_video(tmp_path / "clean.mp4", fps=10, seconds=2)
    assert main(["predict", str(video), "--model", tiny_model_dir, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frames_sampled"] > 0 and data["frames_substituted"] == 0


def _scores(capsys) -> tuple[dict, dict[str, float]]:
    data = json.loads(capsys.readouterr().out)
    return data, {d["label"]: d["score"] for d in data["top_k"]}


def test_predict_classifies_rotated_video_upright(tmp_path, tiny_model_dir, capsys):
    """A 90-degree phone-style video gets the scores of the same picture recorded upright, and its upright size."""
    rotated = make_halves_video(tmp_path / "rotated.mp4", width=64, height=32, seconds=1, rotation=90)
    upright = make_halves_video(tmp_path / "upright.mp4", width=32, height=64, seconds=1, white="bottom")
    wrong_way = make_halves_video(tmp_path / "wrong.mp4", width=32, height=64, seconds=1, white="top")
    args = ["--model", tiny_model_dir, "--json", "--top-k", "5"]
    scores = {}
    for name, video in (("rotated", rotated), ("upright", upright), ("wrong_way", wrong_way)):
        assert main(["predict", str(video), *args]) == 0
        data, scores[name] = _scores(capsys)
        if name == "rotated":
            assert (data["width"], data["height"]) == (32, 64)
    assert scores["rotated"].keys() == scores["upright"].keys()
    assert all(scores["rotated"][k] == pytest.approx(scores["upright"][k], abs=2e-3) for k in scores["upright"])
    # The model tells the two directions apart, so the match above says the turn was the right one.
    common = scores["upright"].keys() & scores["wrong_way"].keys()
    assert max(abs(scores["upright"][k] - scores["wrong_way"][k]) for k in common) > 5e-3


def test_predict_on_fifo_says_it_is_a_pipe(tmp_path, tiny_model_dir, capsys):
    """predict on a named pipe: exit 2, one line saying it is a FIFO and what to do (not 'an empty file')."""
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    assert main(["predict", str(fifo), "--model", tiny_model_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "named pipe (FIFO)" in err[0] and "empty" not in err[0]
    assert "to a file" in err[0]


# ------------------------------------------------------------ too large


def test_open_refuses_video_over_max_pixels(tmp_path):
    """An H.264 file over max_pixels is refused at open, naming its size, the limit and the setting."""
    video = make_video(tmp_path / "big.mp4", width=320, height=240, seconds=0.2)
    with pytest.raises(FatalSourceError) as exc:
        open_video(str(video), "big.mp4", network=False, max_pixels=200 * 150)
    text = str(exc.value)
    assert "320x240" in text and "ingest.max_pixels = 30000" in text and "h264" in text


@pytest.mark.parametrize(
    ("max_pixels", "size"),
    [
        (200 * 150, (160, 120)),  # over the limit: the largest reduced size that fits, here 1/2
        (320 * 240, (320, 240)),  # at the limit: full size
    ],
)
def test_open_decodes_mjpeg_at_the_largest_size_within_max_pixels(tmp_path, max_pixels, size):
    """An MJPEG file over max_pixels is decoded at reduced size; at or under it, at full size."""
    video = make_video(tmp_path / "v.mkv", width=320, height=240, seconds=0.2, codec="mjpeg")
    container, stream = open_video(str(video), "v.mkv", network=False, max_pixels=max_pixels)
    try:
        frame = next(container.decode(stream))
        assert (frame.width, frame.height) == size
    finally:
        container.close()


@pytest.mark.parametrize("width,height,threads", [(3840, 2160, 0), (3856, 2176, 4)])
def test_frames_above_4k_get_at_most_four_decoder_threads(tmp_path, width, height, threads):
    """Above 4K the decoder is capped at 4 threads (each holds a frame); at 4K FFmpeg keeps its own count (0: auto)."""
    video = make_video(tmp_path / "big.mp4", width=width, height=height, fps=10, seconds=0.1)
    container, stream = open_video(str(video), "big.mp4", network=False, max_pixels=None)
    try:
        assert stream.codec_context.thread_count == threads
        frame = next(container.decode(stream))
        assert (frame.width, frame.height) == (width, height)
    finally:
        container.close()


# ------------------------------------------------------------ HTTP wording


def _http_error(cls: type, text: str) -> Exception:
    """The exception PyAV raises for an HTTP error status, as FFmpeg words it."""
    return cls(-1, text, "http://cam.example/stream")


def test_http_403_is_not_called_a_credentials_problem():
    """403 says 'refused access (403 Forbidden)' with what to check; 401 keeps the credentials message."""
    forbidden = classify_av_error(
        _http_error(av.error.HTTPForbiddenError, "Server returned 403 Forbidden (access denied)"), "cam", network=True, reading=False, timeout_s=5
    )
    unauthorized = classify_av_error(
        _http_error(av.error.HTTPUnauthorizedError, "Server returned 401 Unauthorized (authorization failed)"), "cam", network=True, reading=False, timeout_s=5
    )
    assert "refused access (403 Forbidden)" in str(forbidden) and "credentials" not in str(forbidden)
    assert "refused the credentials" in str(unauthorized)
    assert isinstance(forbidden, FatalSourceError) and isinstance(unauthorized, FatalSourceError)


# ------------------------------------------------------------ bench section


@pytest.mark.slow
def test_large_bench_section_measures_a_4k_stream(tmp_path):
    """`bench --only large --quick` decodes a 4K file in a child process and reports finite costs and the verdict."""
    from stream.bench import large
    from stream.bench.common import Section
    from stream.bench.context import BenchContext, BenchOptions

    section = Section("large", "dry run")
    large.run(BenchContext(BenchOptions(quick=True, runs=1, clips=2), tmp_path), section)
    m = section.metrics["4K_bounded"]
    assert m["frames"] == 3 and m["threads"] >= 1
    assert m["decode_ms"] > 0 and m["rgb_ms"] > 0 and m["resize_ms"] > 0
    # A 4K frame is 12 MiB as YUV and 24 MiB as RGB: the decoder and a snapshot cost at least that.
    assert m["decoder_mib"] > 10 and m["snapshot_mib"] >= m["decoder_mib"]  # one peak, read twice
    assert any("accepted" in row.ours for row in section.rows if "default ingest.max_pixels" in row.name)
