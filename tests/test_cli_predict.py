"""`python -m stream predict`: every container, whole-video and timeline output, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from stream.cli import main
from stream.model import Recognizer
from stream.predict import classify_video
from stream.video import VideoError, open_video, read_frames
from tests.support.videos import make_audio_only, make_garbage_file, make_video

CONTAINERS = [
    ("clip.mp4", "libx264", 320, 240),
    ("clip.avi", "mpeg4", 240, 320),  # portrait
    ("clip.mov", "libx264", 256, 144),
    ("clip.mkv", "mjpeg", 320, 180),
    ("clip.webm", "libvpx-vp9", 180, 320),  # portrait
]


@pytest.mark.parametrize("name,codec,width,height", CONTAINERS)
def test_predict_each_container_prints_ranked_table(tmp_path, tiny_model_dir, capsys, name, codec, width, height):
    """Each container/codec decodes and prints a ranked top-k table with the model's labels."""
    video = make_video(tmp_path / name, width=width, height=height, fps=15, seconds=3, codec=codec)
    assert main(["predict", str(video), "--model", tiny_model_dir, "--top-k", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()[:2].strip(".").isdigit()]
    assert len(lines) == 3 and "action_" in lines[0]
    scores = [float(line.split()[-1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    assert f"{width}x{height}" in out


def test_json_whole_video_matches_library(tmp_path, tiny_model_dir, capsys):
    """--json carries the same averaged top-k the library computes, for a video longer than the span."""
    video = make_video(tmp_path / "long.mp4", fps=10, seconds=12)
    assert main(["predict", str(video), "--model", tiny_model_dir, "--json", "--span-s", "4"]) == 0
    data = json.loads(capsys.readouterr().out)
    rec = Recognizer.load(tiny_model_dir, device="cpu")
    expected = classify_video(rec, str(video), span_s=4, top_k=5)
    assert data["clips"] == 3 and len(expected.clips) == 3
    assert [d["label"] for d in data["top_k"]] == [label for label, _ in expected.top_k]
    assert data["duration_s"] == pytest.approx(12.0, abs=0.2)


def test_timeline_with_stride(tmp_path, tiny_model_dir, capsys):
    """--stride-s gives sliding clips whose start/end advance by the stride and cover the span."""
    video = make_video(tmp_path / "t.mkv", codec="libx264", fps=10, seconds=10)
    assert main(["predict", str(video), "--model", tiny_model_dir, "--json", "--span-s", "4", "--stride-s", "2"]) == 0
    timeline = json.loads(capsys.readouterr().out)["timeline"]
    starts = [c["start_s"] for c in timeline]
    assert starts[:3] == pytest.approx([0.0, 2.0, 4.0], abs=0.11)
    assert all(c["end_s"] - c["start_s"] == pytest.approx(4.0, abs=0.11) for c in timeline)
    assert len(timeline) >= 3


def test_short_video_is_one_clip_over_all_of_it(tmp_path, tiny_model_dir):
    """A video shorter than the span is one clip from its first to its last frame."""
    video = make_video(tmp_path / "short.mp4", fps=10, seconds=2)
    rec = Recognizer.load(tiny_model_dir, device="cpu")
    result = classify_video(rec, str(video), span_s=8.5)
    assert len(result.clips) == 1
    assert result.clips[0].start_s == 0.0 and result.clips[0].end_s == pytest.approx(1.9, abs=0.01)


def test_read_frames_seeks_and_matches_sequential_decode(tmp_path):
    """Frames read with seeking are the very frames a full sequential decode gives."""
    from tests.support.videos import frame_index_of

    video = make_video(tmp_path / "seek.mp4", fps=10, seconds=30, pattern="solid")
    info = open_video(str(video))
    wanted = np.array([3, 150, 151, 290])
    frames = read_frames(info, wanted)
    assert sorted(frames) == list(wanted)
    for i in wanted:
        assert frame_index_of(frames[int(i)]) == i % 32


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda p: p / "missing.mp4", "no such file"),
        (lambda p: make_garbage_file(p / "garbage.mp4"), "not a readable video"),
        (lambda p: make_audio_only(p / "sound.wav"), "no video stream"),
        (lambda p: (p / "empty.mp4").write_bytes(b"") or p / "empty.mp4", "empty.mp4"),
        (lambda p: p, "folder"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(tmp_path, tiny_model_dir, capsys, make, fragment):
    """Missing, garbage, audio-only, empty files and folders: exit 2 and one line naming the problem."""
    path = make(tmp_path)
    assert main(["predict", str(path), "--model", tiny_model_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("error:")


def test_video_with_no_frames(tmp_path):
    """A container with a video stream but no frames is reported as such."""
    import av

    path = tmp_path / "noframes.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()  # writes the header (and its video stream) with no frame after it
    assert path.stat().st_size > 0
    with pytest.raises(VideoError, match="has no frames"):
        open_video(str(path))


def test_one_bad_video_among_good_ones(tmp_path, tiny_model_dir, capsys):
    """Good videos are still classified when another one is bad; the exit code is 2."""
    good = make_video(tmp_path / "good.mp4", seconds=1)
    assert main(["predict", str(good), str(tmp_path / "nope.mp4"), "--model", tiny_model_dir]) == 2
    captured = capsys.readouterr()
    assert "good.mp4" in captured.out and "nope.mp4: no such file" in captured.err


def test_unknown_model_is_one_line_no_traceback(tmp_path):
    """Run as a real process offline: an unknown hub id gives one line, exit 2, no traceback."""
    video = make_video(tmp_path / "v.mp4", seconds=1)
    proc = subprocess.run(
        [sys.executable, "-m", "stream", "predict", str(video), "--model", "someone/not-a-model"],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "someone/not-a-model" in lines[0] and "--model" in lines[0] and "Traceback" not in proc.stderr


def test_bad_flag_values_exit_2(tmp_path, capsys):
    """--top-k 0 and --span-s -1 are usage errors (exit 2) naming the flag."""
    with pytest.raises(SystemExit) as exc:
        main(["predict", "x.mp4", "--top-k", "0"])
    assert exc.value.code == 2 and "--top-k" in capsys.readouterr().err
