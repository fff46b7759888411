"""Per-replica stream metrics, served at /metrics in the Prometheus text format (prometheus-client).

Every agent gets its own CollectorRegistry (not prometheus-client's global one), so two agents
in one process count apart. The server records by passing each SSE response through track():

    frames = metrics_for(agent).track(frames)           # where the server builds its SSE response
    frames = metrics_for(agent).track_async(frames)     # the same, on the asyncio path (asgi.py)
    metrics_for(agent).add_route(app)                    # in setup_routes: GET /metrics (asgi.py serves it itself)

What it exposes (the names Prometheus scrapes, per replica; Prometheus adds the instance label):
    a2a_streams_started_total, a2a_streams_completed_total, a2a_streams_failed_total{reason},
    a2a_streams_open, a2a_chunks_sent_total,
    a2a_first_chunk_seconds (histogram): stream start -> first chunk written,
    a2a_chunk_gap_seconds (histogram): between two chunks of one stream.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterable, Iterator, Union

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import choose_encoder

# How each of the kit's SSE formats marks its final event (track()'s end_marker).
STREAM_END = '"lastChunk": true'  # POST /stream: the empty lastChunk event (chunks carry no lastChunk key)
TASK_END = "event: complete"      # tasks/sendSubscribe, tasks/resubscribe (python-a2a task events)
V03_END = '"final": true'         # A2A v0.3 message/stream: the final status-update
# A2A on POST / (v0.3, or v1.0, whose final statusUpdate has a terminal state and no "final" flag)
A2A_ENDS = (V03_END, *(f'"TASK_STATE_{state}"' for state in ("COMPLETED", "FAILED", "CANCELED", "REJECTED")))

FAILURE_REASONS = ("error", "disconnected")  # an error event was sent / the stream stopped short
FIRST_CHUNK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CHUNK_GAP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)


class StreamMetrics:
    """The counters and histograms of one agent (one replica), in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.started = Counter("a2a_streams_started", "SSE streams opened", registry=self.registry)
        self.completed = Counter("a2a_streams_completed", "Streams that sent their final event",
                                 registry=self.registry)
        self.failed = Counter("a2a_streams_failed", "Streams that ended without their final event",
                              ["reason"], registry=self.registry)
        self.open = Gauge("a2a_streams_open", "Streams in flight now", registry=self.registry)
        self.chunks = Counter("a2a_chunks_sent", "Data events written, the final one not counted",
                              registry=self.registry)
        self.first_chunk = Histogram("a2a_first_chunk_seconds", "From the stream's start to its first chunk",
                                     buckets=FIRST_CHUNK_BUCKETS, registry=self.registry)
        self.chunk_gap = Histogram("a2a_chunk_gap_seconds", "Between two chunks of one stream",
                                   buckets=CHUNK_GAP_BUCKETS, registry=self.registry)
        for reason in FAILURE_REASONS:
            self.failed.labels(reason)  # exported as 0 before the first failure, so rates work at once

    def track(self, frames: Iterable[str], end_marker: Union[str, tuple] = STREAM_END) -> Iterator[str]:
        """Pass SSE frames through unchanged, recording each as it is handed to the server to write.

        Comments (": ping") are not chunks; an `event: error` frame fails the stream; the frame
        containing end_marker (or one of a tuple of them) completes it; a stream that stops before either (the client hung
        up) counts as failed, reason "disconnected"."""
        tally = _Tally(self, end_marker)
        try:
            for frame in frames:
                tally.count(frame)
                yield frame
        finally:  # also when the server closes the generator early (the client went away)
            tally.close()

    async def track_async(self, frames: AsyncIterator[str], end_marker: Union[str, tuple] = STREAM_END
                          ) -> AsyncIterator[str]:
        """track() for an asyncio server's async frames (asgi.py); closing it closes frames."""
        tally = _Tally(self, end_marker)
        try:
            async for frame in frames:
                tally.count(frame)
                yield frame
        finally:
            tally.close()
            await frames.aclose()  # an async for left early does not close what it iterates

    def exposition(self) -> bytes:
        """Everything, in the Prometheus text format (version 0.0.4, what every scraper reads)."""
        return generate_latest(self.registry)

    def encoded(self, accept: str) -> tuple[bytes, str]:
        """(body, content type) in the format a scraper's Accept header asks for (Prometheus text by
        default, OpenMetrics if asked), as prometheus-client's own server does; both paths serve it."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def view(self) -> Any:
        """A Flask view for GET /metrics."""
        from flask import Response, request
        body, content_type = self.encoded(request.headers.get("Accept", ""))
        return Response(body, content_type=content_type)

    def add_route(self, app: Any, path: str = "/metrics") -> None:
        app.add_url_rule(path, endpoint="a2a_metrics", view_func=self.view, methods=["GET"])


class _Tally:
    """One stream's record, fed each frame as it goes out (track() and track_async() share it)."""

    def __init__(self, metrics: StreamMetrics, end_marker: Union[str, tuple]):
        self.metrics, self.ends = metrics, (end_marker,) if isinstance(end_marker, str) else end_marker
        self.outcome = "disconnected"  # until the final event or an error event is seen
        self.last_chunk = time.perf_counter()  # the first chunk's latency counts from here
        self.first = True
        metrics.started.inc()
        metrics.open.inc()

    def count(self, frame: str) -> None:
        for event in frame.split("\n\n"):  # a write may carry several events (the server batches)
            if not event or event.startswith(":") or self.outcome != "disconnected":
                continue
            if event.startswith("event: error"):
                self.outcome = "error"
            elif any(end in event for end in self.ends):
                self.outcome = "completed"
            else:
                now = time.perf_counter()
                (self.metrics.first_chunk if self.first else self.metrics.chunk_gap).observe(now - self.last_chunk)
                self.first, self.last_chunk = False, now
                self.metrics.chunks.inc()

    def close(self) -> None:
        self.metrics.open.dec()
        if self.outcome == "completed":
            self.metrics.completed.inc()
        else:
            self.metrics.failed.labels(self.outcome).inc()


def metrics_for(agent: Any) -> StreamMetrics:
    """The agent's StreamMetrics, made on first use: the agent's author writes nothing for it."""
    metrics = agent.__dict__.get("_stream_metrics")
    if metrics is None:  # setdefault: two first requests at once still share one
        metrics = agent.__dict__.setdefault("_stream_metrics", StreamMetrics())
    return metrics
