"""Typed configuration: validated once at start-up, unknown keys rejected.

Each field has a description and bounds. A bad file produces one
:class:`ConfigError` whose message names the key path, the bad value and what
is allowed, e.g. ``window.span_s: got -1 (must be greater than 0)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stream.ids import STREAM_ID_PATTERN

__all__ = [
    "Config",
    "ConfigError",
    "ModelConfig",
    "WindowConfig",
    "LabelConfig",
    "SchedulerConfig",
    "SourceConfig",
    "ServerConfig",
    "IngestConfig",
    "RecordConfig",
    "EventsConfig",
    "load_config",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_SPAN_S",
]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"
# facebook/timesformer-base-finetuned-k400 saw 8 frames spread over 256 frames at 30 fps.
DEFAULT_SPAN_S = round(256 / 30, 3)

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ModelConfig(_Strict):
    name: str = Field(
        "facebook/timesformer-base-finetuned-k400",
        min_length=1,
        description="Hugging Face hub id or local folder of a video-classification checkpoint.",
    )
    device: str = Field("auto", description="auto (cuda if present, else cpu), cpu, cuda or cuda:N.")
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = Field(
        "auto",
        description="auto: bfloat16/float16 on CUDA, int8 on CPU; int8 = dynamic quantization of linear layers (CPU only).",
    )
    attention: Literal["auto", "eager", "sdpa"] = Field(
        "auto", description="sdpa = torch scaled_dot_product_attention (same math; flash attention on GPUs)."
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE_RE.match(v):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return v


class WindowConfig(_Strict):
    frames: int | None = Field(None, ge=1, le=128, description="Frames per clip; default: the model's num_frames.")
    span_s: float = Field(DEFAULT_SPAN_S, gt=0, le=120, description="Seconds one clip covers.")
    stride_s: float = Field(1.0, gt=0, le=60, description="How often each stream is classified, in seconds.")
    ring_fps: float | None = Field(
        None,
        gt=0,
        le=120,
        description="Frames per second kept in each stream's ring; default: 4 per sample interval.",
    )


class LabelConfig(_Strict):
    smoothing: float = Field(
        0.5, ge=0, lt=1, description="EMA weight of the past (0 = raw scores, closer to 1 = smoother)."
    )
    enter: float = Field(0.5, gt=0, le=1, description="Smoothed score at which a label event starts.")
    exit: float = Field(0.35, ge=0, lt=1, description="Smoothed score below which it ends (hysteresis).")
    update_interval_s: float = Field(2.0, ge=0, le=3600, description="At most one update event per label this often.")

    @field_validator("exit")
    @classmethod
    def _exit_below_enter(cls, v: float, info) -> float:
        enter = info.data.get("enter")
        if enter is not None and v > enter:
            raise ValueError(f"must not exceed enter ({enter})")
        return v


class SchedulerConfig(_Strict):
    max_batch: int = Field(8, ge=1, le=256, description="Most clips run through the model at once.")
    max_wait_ms: float = Field(10.0, ge=0, le=1000, description="How long to wait for more clips to fill a batch.")


class RecordConfig(_Strict):
    """What is recorded of each label event: a clip and a snapshot (globally in ``events.record``, or per stream)."""

    clips: bool = Field(True, description="Record an MP4 clip of each event.")
    snapshots: bool = Field(True, description="Keep a JPEG (full camera resolution) of the frame where the event peaked.")
    pre_capture_s: float = Field(5.0, ge=0, le=60, description="Seconds of video before the event's start in its clip.")
    post_capture_s: float = Field(5.0, ge=0, le=300, description="Seconds of video after the event's end in its clip.")
    max_clip_s: float = Field(300.0, gt=0, le=3600, description="A clip is cut at this length; the event itself goes on.")
    encode_fps: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Webcams and browser cameras deliver decoded frames: they are encoded (H.264) at this rate for clips.",
    )
    encode_max_height: int = Field(
        720, ge=120, le=4320, description="Frames of webcams and browser cameras are scaled to at most this height for clips."
    )


class EventsConfig(_Strict):
    record: RecordConfig = Field(default_factory=RecordConfig)
    retain_days: float = Field(10.0, gt=0, le=36500, description="Events (rows, clips, snapshots) older than this are removed.")
    max_disk_mb: float | None = Field(
        None, gt=0, description="Most megabytes of clips and snapshots; the oldest events' files go first. None: no limit."
    )
    min_free_mb: float = Field(
        256.0,
        ge=0,
        description="Recording pauses (events are still stored) while the data folder's disk has less free space than this.",
    )
    cleanup_interval_s: float = Field(300.0, gt=0, le=86400, description="How often retention runs.")


class SourceConfig(_Strict):
    url: str | int = Field(..., description="Webcam index or /dev/videoN, rtsp/rtsps/rtmp/http(s) URL, or a video file.")
    id: str | None = Field(None, pattern=STREAM_ID_PATTERN, description="Stream id; default derived from url.")
    max_fps: float | None = Field(None, gt=0, le=240, description="Decimate frames at ingest to at most this rate.")
    loop: bool = Field(True, description="Files played as cameras start again at the end.")
    labels: LabelConfig | None = Field(None, description="Per-stream label event settings.")
    record: RecordConfig | None = Field(None, description="Per-stream recording settings (default: events.record).")


class ServerConfig(_Strict):
    host: str = Field("127.0.0.1", min_length=1, description="Address to bind; anything but loopback needs a token.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port).")
    token: str | None = Field(None, min_length=8, description="API token; also read from STREAM_TOKEN.")
    allow_local_sources: bool = Field(False, description="Let API clients add files and devices, not just URLs.")
    max_streams: int = Field(16, ge=1, le=1024, description="Most streams at once.")
    max_subscribers: int = Field(64, ge=1, le=10000, description="Most websocket clients at once.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Extra Origins allowed on websockets and on state-changing requests (POST/DELETE) from browsers.",
    )
    ice_servers: list[str] = Field(default_factory=list, description="STUN/TURN URLs for WebRTC; empty = none.")
    max_webrtc_streams: int = Field(4, ge=0, le=256, description="Most browser-camera streams at once.")
    ice_host_addresses: list[str] = Field(
        default_factory=list,
        description="Offer only these local addresses as WebRTC host candidates; empty = every interface.",
    )
    webrtc_connect_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A browser camera that sends no video this long after its offer is closed and its slot freed.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A client must finish sending a request's headers within this many seconds, and never pause its body longer.",
    )
    max_connections: int = Field(
        512, ge=8, le=100000, description="Most HTTP and websocket connections at once; more are answered 503."
    )
    max_preview_viewers: int = Field(
        16, ge=1, le=1000, description="Most MJPEG preview connections at once (all streams together)."
    )
    api_docs: bool = Field(
        False, description="Serve the interactive API docs at /docs and /redoc (under the token, like the API)."
    )
    data_dir: str = Field(
        "data",
        min_length=1,
        max_length=4096,
        description=(
            "Folder of the event database (events.db) and the streams added through the API; relative paths are "
            "relative to the current directory. Created with mode 0700: it holds camera URLs with their passwords."
        ),
    )


class IngestConfig(_Strict):
    max_pixels: int = Field(
        3840 * 2160,
        ge=64 * 64,
        le=7680 * 4320 * 4,
        description=(
            "Largest video frame (width x height) a source may decode; larger video is decoded at reduced size "
            "where the codec allows (MJPEG, MPEG-4 Part 2, MPEG-1/2, H.263) and refused with the reason otherwise."
        ),
    )


class Config(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    top_k: int = Field(5, ge=1, le=100, description="How many labels each result carries.")
    labels: LabelConfig = Field(default_factory=LabelConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    server: ServerConfig = Field(default_factory=ServerConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)

    @model_validator(mode="after")
    def _sources_fit(self) -> "Config":
        # server.max_streams bounds what the server runs, not only what the API adds.
        if len(self.sources) > self.server.max_streams:
            raise ValueError(
                f"{len(self.sources)} sources are configured but server.max_streams is {self.server.max_streams}; "
                "raise server.max_streams or remove sources"
            )
        return self


def _describe(err: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in err["loc"]) or "<top level>"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key (check the spelling; see configs/default.yaml for the keys)"
    if kind == "missing":
        return f"{path}: required key is missing"
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    if not err["loc"]:
        # A rule across keys (the input is the whole config, which may hold passwords).
        return msg
    if err["loc"] and err["loc"][-1] == "token":
        return f"{path}: {msg} (the value is not shown: it is a secret)"
    # The input may be a camera URL with a password in it. (Imported here:
    # stream.sources pulls in torch, and a config error should come fast.)
    from stream.sources.urls import scrub

    return f"{path}: got {scrub(repr(err.get('input')))} ({msg})"


def validate_config(data: dict[str, Any] | None, source: str = "config") -> Config:
    """Validate a dict, raising :class:`ConfigError` that names every bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: cannot override inside a non-mapping value")
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML file (default: configs/default.yaml), apply dotted-key overrides, validate."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, key, value)
    return validate_config(data, source=str(path))


__all__.append("validate_config")
