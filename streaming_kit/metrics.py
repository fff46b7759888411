"""Per-replica stream metrics, served at /metrics in the Prometheus text format (prometheus-client).

Every agent gets its own CollectorRegistry (not prometheus-client's global one), so two agents
in one process count apart. The server records by passing each SSE response through track():

    frames = metrics_for(agent).track(frames)           # where the server builds its SSE response
    metrics_for(agent).add_route(app)                    # in setup_routes: GET /metrics

What it exposes (the names Prometheus scrapes, per replica; Prometheus adds the instance label):
    a2a_streams_started_total, a2a_streams_completed_total, a2a_streams_failed_total{reason},
    a2a_streams_open, a2a_chunks_sent_total,
    a2a_first_chunk_seconds (histogram): stream start -> first chunk written,
    a2a_chunk_gap_seconds (histogram): between two chunks of one stream.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Union

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
        self.started.inc()
        self.open.inc()
        outcome = "disconnected"
        last_chunk = time.perf_counter()  # the first chunk's latency counts from here
        first = True
        ends = (end_marker,) if isinstance(end_marker, str) else end_marker
        try:
            for frame in frames:
                for event in frame.split("\n\n"):  # a write may carry several events (the server batches)
                    if not event or event.startswith(":") or outcome != "disconnected":
                        continue
                    if event.startswith("event: error"):
                        outcome = "error"
                    elif any(end in event for end in ends):
                        outcome = "completed"
                    else:
                        now = time.perf_counter()
                        (self.first_chunk if first else self.chunk_gap).observe(now - last_chunk)
                        first, last_chunk = False, now
                        self.chunks.inc()
                yield frame
        finally:  # also when the server closes the generator early (the client went away)
            self.open.dec()
            if outcome == "completed":
                self.completed.inc()
            else:
                self.failed.labels(outcome).inc()

    def exposition(self) -> bytes:
        """Everything, in the Prometheus text format (version 0.0.4, what every scraper reads)."""
        return generate_latest(self.registry)

    def view(self) -> Any:
        """A Flask view for GET /metrics: the format the scraper's Accept header asks for
        (Prometheus text by default, OpenMetrics if asked), as prometheus-client's own server does."""
        from flask import Response, request
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(self.registry), content_type=content_type)

    def add_route(self, app: Any, path: str = "/metrics") -> None:
        app.add_url_rule(path, endpoint="a2a_metrics", view_func=self.view, methods=["GET"])


def metrics_for(agent: Any) -> StreamMetrics:
    """The agent's StreamMetrics, made on first use: the agent's author writes nothing for it."""
    metrics = agent.__dict__.get("_stream_metrics")
    if metrics is None:  # setdefault: two first requests at once still share one
        metrics = agent.__dict__.setdefault("_stream_metrics", StreamMetrics())
    return metrics
