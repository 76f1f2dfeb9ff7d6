"""stream.video on hostile media: decoding past damage, rotated frames, what is not a file."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

from stream.video import VideoError, clip_plan, open_video, read_frames
from tests.support.videos import damage_file, make_halves_video, make_video


def _decodable_pts(path) -> set[int]:
    """pts of every frame a packet-by-packet decode recovers (what a live file source gets)."""
    got: set[int] = set()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                got.update(int(f.pts) for f in packet.decode() if f.pts is not None)
            except av.error.InvalidDataError:
                continue
    return got


@pytest.fixture
def damaged(tmp_path):
    """A 5 s, 30 fps H.264 MP4 (one keyframe) with 10% of its bytes overwritten in the middle."""
    return damage_file(make_video(tmp_path / "damaged.mp4", fps=30, seconds=5))


def test_read_frames_decodes_past_damage(damaged):
    """Past a damaged stretch decoding goes on: only sampled frames whose packets are lost are substituted."""
    info = open_video(str(damaged))
    wanted = np.unique(np.concatenate(clip_plan(info, 8, 8.5 / 3, None)))
    frames = read_frames(info, wanted)
    decodable = _decodable_pts(damaged)
    lost = {int(i) for i in wanted if int(info.pts[i]) not in decodable}
    # Before the fix decoding stopped at the first bad packet: 14 of these 24 were copies.
    assert len(wanted) == 24 and 0 < len(lost) < 6
    assert set(frames.substituted) == lost
    assert sorted(frames) == [int(i) for i in wanted]
    # Frames after the damage are real ones, not copies of the last good frame.
    last = int(wanted[-1])
    assert last not in frames.substituted and not np.array_equal(frames[last], frames[int(wanted[0])])


def test_substitution_is_logged_with_its_share(damaged, caplog):
    """The warning names how many sampled frames were stood in for, of how many, and the share."""
    info = open_video(str(damaged))
    wanted = np.unique(np.concatenate(clip_plan(info, 8, 8.5 / 3, None)))
    with caplog.at_level("WARNING", logger="stream.video"):
        frames = read_frames(info, wanted)
    n = len(frames.substituted)
    share = f"({100 * n / len(wanted):.0f}%)"
    assert any(f"{n} of {len(wanted)} sampled frames {share}" in r.getMessage() for r in caplog.records)


def test_undamaged_video_substitutes_nothing(tmp_path, caplog):
    """A clean file: no substitutions and no warning."""
    video = make_video(tmp_path / "clean.mp4", fps=30, seconds=3)
    info = open_video(str(video))
    with caplog.at_level("WARNING", logger="stream.video"):
        frames = read_frames(info, np.arange(0, 90, 7))
    assert frames.substituted == () and not caplog.records


@pytest.mark.parametrize("rotation,white_on_top", [(-90, True), (90, False)])
def test_rotated_video_reads_upright(tmp_path, rotation, white_on_top):
    """A display-matrix rotation is applied: size swapped in VideoInfo, frames turned before resizing."""
    video = make_halves_video(tmp_path / "rot.mp4", width=64, height=32, rotation=rotation)
    info = open_video(str(video))
    assert (info.width, info.height, info.rotation) == (32, 64, rotation % 360)
    seen: list[tuple[int, int]] = []
    frames = read_frames(info, np.array([0, 5]), size_for=lambda h, w: seen.append((h, w)) or (h // 2, w // 2))
    assert seen[0] == (64, 32)  # size_for sees the upright size
    image = frames[0].astype(float)
    assert image.shape == (32, 16, 3)
    top, bottom = image[:12].mean(), image[-12:].mean()
    assert (top > 200 and bottom < 50) if white_on_top else (bottom > 200 and top < 50)


def test_unrotated_video_is_untouched(tmp_path):
    """Without a display matrix the white half stays on the left and the size is as coded."""
    video = make_halves_video(tmp_path / "flat.mp4", width=64, height=32)
    info = open_video(str(video))
    assert (info.width, info.height, info.rotation) == (64, 32, 0)
    image = read_frames(info, np.array([0]))[0].astype(float)
    assert image[:, :28].mean() > 200 and image[:, -28:].mean() < 50


def test_fifo_is_named_as_a_pipe(tmp_path):
    """A named pipe is refused before FFmpeg opens it (which would block), saying what it is and what to do."""
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(VideoError, match=r"named pipe \(FIFO\).*save .* to a file"):
        open_video(str(fifo))
