"""Prometheus metrics: per-stream figures read at scrape time, latency histograms fed per result.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so
tests (and embedders) can build several apps in one process without
"Duplicated timeseries" errors from the global registry.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.pipeline import Pipeline
from stream.server.http_protocol import HttpStats
from stream.server.preview import PreviewViewers
from stream.types import Prediction, SourceState

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class _StreamCollector(Collector):
    """Reads pipeline.streams() when scraped: no per-frame bookkeeping for metrics."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def collect(self) -> Iterator:
        infos = self._pipeline.streams()
        counters = {
            "frames_decoded": ("stream_frames_decoded", "Frames decoded from the source."),
            "frames_in": ("stream_frames_stored", "Frames stored in the stream's ring."),
            "frames_dropped": ("stream_frames_dropped", "Frames decoded but not kept (decimation, out of order)."),
            "clips_inferred": ("stream_clips_inferred", "Clips the model classified."),
            "clips_dropped": ("stream_clips_dropped", "Clips replaced by a fresher one before they ran."),
            "reconnects": ("stream_reconnects", "Times the source reconnected."),
        }
        for field, (name, doc) in counters.items():
            family = CounterMetricFamily(name, doc, labels=["stream"])
            for info in infos:
                family.add_metric([info.id], getattr(info.figures, field))
            yield family
        fps = GaugeMetricFamily("stream_ingest_fps", "Frames per second arriving from the source.", labels=["stream"])
        ring = GaugeMetricFamily("stream_ring_bytes", "Memory held by the stream's frame ring.", labels=["stream"])
        state = GaugeMetricFamily("stream_state", "1 for the stream's current state.", labels=["stream", "state"])
        for info in infos:
            fps.add_metric([info.id], info.figures.ingest_fps)
            ring.add_metric([info.id], info.figures.ring_bytes)
            for s in SourceState:
                state.add_metric([info.id, s.value], 1.0 if info.state is s else 0.0)
        yield fps
        yield ring
        yield state
        hub = self._pipeline.hub.stats()
        yield GaugeMetricFamily("hub_subscribers", "Subscribers of the label hub (websocket clients).", value=hub.subscribers)
        yield CounterMetricFamily("hub_dropped_messages", "Messages subscribers lost by reading too slowly.", value=hub.dropped)
        store = self._pipeline.store
        if store is not None:
            st = store.stats()
            yield CounterMetricFamily("event_store_writes", "Writes the event store committed.", value=st.written)
            yield CounterMetricFamily(
                "event_store_queue_full", "Writes refused because the event store's queue was full (lost rows).", value=st.queue_full
            )
            yield CounterMetricFamily("event_store_write_errors", "Event store writes that failed in SQLite.", value=st.write_errors)
            yield GaugeMetricFamily("event_store_queue_depth", "Writes waiting for the event store's writer.", value=st.queue_depth)
            yield CounterMetricFamily(
                "event_store_subscription_dropped",
                "Hub messages the event store's subscription lost (an error: missing rows).",
                value=st.subscription_dropped,
            )
        yield from self._recording(infos)

    def _recording(self, infos) -> Iterator:
        recorder, retention = self._pipeline.recorder, self._pipeline.retention
        if recorder is None:
            return
        paused = GaugeMetricFamily(
            "stream_recording_paused", "1 while the stream's clips and snapshots are paused (disk full or not writable).",
            labels=["stream", "reason"],
        )
        buffered = GaugeMetricFamily("stream_packet_buffer_bytes", "Compressed video kept for pre-capture.", labels=["stream"])
        for info in infos:
            rec = info.recording
            if rec is not None and rec.state != "off":
                paused.add_metric([info.id, rec.reason], 1.0 if rec.state == "paused" else 0.0)
        for stream_id, nbytes in self._pipeline.packet_bytes().items():
            buffered.add_metric([stream_id], nbytes)
        yield paused
        yield buffered
        st = recorder.stats()
        yield from _counters(
            ("recorder_clips_started", "Clips begun (one per event with recording on).", st.clips_started),
            ("recorder_clips_written", "Clips completed and published.", st.clips_written),
            ("recorder_clips_failed", "Clips that could not be written (the log says why).", st.clips_failed),
            ("recorder_snapshots_written", "Snapshots written (the first and each higher peak).", st.snapshots_written),
            ("recorder_snapshots_failed", "Snapshots that could not be taken or written.", st.snapshots_failed),
            ("recorder_subscription_dropped", "Hub messages the recorder lost (an error: events without clips).", st.dropped),
        )
        yield GaugeMetricFamily("recorder_clips_active", "Clips being written now.", value=st.clips_active)
        for key, value in sorted(st.clip_recorder.items()):
            # started/written/failed/active are the recorder_clips_* figures above.
            if key not in _CLIP_FIGURES and isinstance(value, (int, float)) and not isinstance(value, bool):
                yield GaugeMetricFamily(f"recorder_clip_writer_{key}", f"Clip writer figure {key!r}.", value=value)
        if retention is not None:
            rs = retention.stats()
            yield from _counters(
                ("retention_runs", "Retention runs.", rs.runs),
                ("retention_failures", "Retention runs that failed (the log says why).", rs.failures),
                ("retention_deleted_aged", "Events removed for being older than events.retain_days.", rs.deleted_aged),
                ("retention_deleted_capped", "Events removed to keep media under events.max_disk_mb.", rs.deleted_capped),
                ("retention_orphans_removed", "Media files removed that had no event.", rs.orphans_removed),
                ("retention_bytes_freed", "Bytes of media retention removed.", rs.bytes_freed),
            )
            if rs.usage_bytes is not None:
                yield GaugeMetricFamily("events_media_bytes", "Bytes of clips and snapshots at the last retention run.", value=rs.usage_bytes)
        guard = self._pipeline.disk_guard
        if guard is not None:
            gs = guard.stats()
            if gs.free_bytes is not None:
                yield GaugeMetricFamily("events_disk_free_bytes", "Free bytes on the disk of the media folders.", value=gs.free_bytes)
            yield GaugeMetricFamily("events_recording_paused", "1 while recording is paused for disk trouble (all streams).", value=int(gs.paused))


_CLIP_FIGURES = frozenset({"started", "written", "failed", "active"})


def _counters(*rows: tuple[str, str, float]) -> Iterator:
    """One counter family per (name, help, value)."""
    for name, doc, value in rows:
        yield CounterMetricFamily(name, doc, value=value)


class _ServerCollector(Collector):
    """Preview viewers and what the HTTP layer refused or cut (read when scraped)."""

    def __init__(self, previews: PreviewViewers, http: HttpStats) -> None:
        self._previews = previews
        self._http = http

    def collect(self) -> Iterator:
        previews, http = self._previews, self._http
        yield GaugeMetricFamily("preview_viewers", "MJPEG previews being watched now (all streams).", value=previews.active)
        yield GaugeMetricFamily("preview_viewers_max", "The cap on preview viewers (server.max_preview_viewers).", value=previews.limit)
        yield CounterMetricFamily("preview_refused", "Previews refused because the viewer cap was reached.", value=previews.refused)
        yield GaugeMetricFamily("http_connections", "HTTP and websocket connections open now.", value=http.open_connections)
        yield CounterMetricFamily(
            "http_refused_connections", "Connections refused at server.max_connections.", value=http.refused_connections
        )
        yield CounterMetricFamily(
            "http_header_timeouts", "Connections closed for not sending headers in server.header_timeout_s.", value=http.header_timeouts
        )
        yield CounterMetricFamily(
            "http_body_timeouts", "Connections closed because the request body stalled for server.header_timeout_s.",
            value=http.body_timeouts,
        )
        yield CounterMetricFamily("http_stalled_writes", "Connections cut because the client stopped reading.", value=http.stalled_writes)
        yield CounterMetricFamily("http_bad_requests", "Requests refused as malformed HTTP.", value=http.bad_requests)


class Metrics:
    """The metrics of one app: a registry, the stream and server collectors and two histograms.

    It also holds the counters the routes and the HTTP protocol update: the
    preview viewers (``previews``) and the HTTP refusals (``http``).
    """

    def __init__(self, pipeline: Pipeline, previews: PreviewViewers | None = None) -> None:
        self.previews = previews if previews is not None else PreviewViewers(16)
        self.http = HttpStats()
        self.registry = CollectorRegistry()
        self.registry.register(_StreamCollector(pipeline))
        self.registry.register(_ServerCollector(self.previews, self.http))
        self.inference = Histogram(
            "stream_inference_seconds",
            "Model time of the batch each clip ran in.",
            ["stream"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.label_age = Histogram(
            "stream_label_age_seconds",
            "Time from the newest frame of a clip to its labels being published.",
            ["stream"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._pipeline = pipeline

    def observe(self, pred: Prediction) -> None:
        """A pipeline observer: one call per result (a few per second per stream), never per frame."""
        self.inference.labels(pred.stream_id).observe(pred.inference_s)
        self.label_age.labels(pred.stream_id).observe(max(0.0, pred.label_age_s))

    def forget(self, stream_id: str) -> None:
        """Drop a removed stream's histogram series, so /metrics does not grow with churn."""
        for hist in (self.inference, self.label_age):
            try:
                hist.remove(stream_id)
            except KeyError:
                pass

    def attach(self) -> None:
        if self.observe not in self._pipeline.observers:
            self._pipeline.observers.append(self.observe)

    def detach(self) -> None:
        if self.observe in self._pipeline.observers:
            self._pipeline.observers.remove(self.observe)

    def render(self) -> bytes:
        return generate_latest(self.registry)
