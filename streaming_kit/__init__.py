"""streaming_kit: correct A2A streaming on top of python-a2a 0.5.10.

Copy this folder next to your agent. It keeps python-a2a's API (A2AServer, StreamingClient,
Message) and replaces only the parts whose streaming is broken. Each public name says which
measured defect it exists for; the numbers (§n) refer to the defect list in this project's
README ("What the kit fixes").

    server.py   StreamingAgent, serve()            client.py  StrictStreamingClient
    tasks.py    TaskStreamingAgent/Client           a2a.py     the official A2A shapes
    messages.py message and chunk helpers           patches.py every change made to python-a2a
    rpc.py      the A2A JSON-RPC endpoints          asgi.py    the same agents on an asyncio server
"""
from .patches import PatchTargetMissing, quiet  # first: loads python_a2a quickly, applies the patches
from .messages import (RequestProblem, StreamTruncatedError, chunk_text, message_text, parse_stream_request,
                       text_message)
from .server import (HANGUP, KEEPALIVE_SECONDS, MAX_BODY_BYTES, ServerBusy, StreamingAgent, default_max_streams,
                     last_event_id, serve)
from .asgi import asgi_app, h11_watching_hangups, serve_asgi
from .client import StrictStreamingClient, TaskEndedError
from .a2a import FINAL_STATES, a2a_state
from .tasks import TaskStreamingAgent, TaskStreamingClient, TaskUpdate, artifact_text
from .transforms import StopAt, pipeline, redact_secrets, tidy_whitespace, whole_words
from .sessions import FINAL_SESSION_STATES, SessionFinished, StreamSession, StreamSessions, TooManyStreams
from python_a2a import A2AConnectionError, A2AError, A2AResponseError, A2AStreamingError

__all__ = ["A2AConnectionError", "A2AError", "A2AResponseError", "A2AStreamingError", "FINAL_STATES",
           "HANGUP", "KEEPALIVE_SECONDS", "MAX_BODY_BYTES", "PatchTargetMissing", "RequestProblem", "ServerBusy",
           "StreamTruncatedError", "StreamingAgent", "StrictStreamingClient", "TaskStreamingAgent",
           "TaskStreamingClient", "TaskUpdate", "a2a_state", "artifact_text", "chunk_text", "last_event_id",
           "message_text", "parse_stream_request", "quiet", "serve", "text_message", "asgi_app", "serve_asgi",
           "default_max_streams"]
__all__ += ["h11_watching_hangups", "TaskEndedError", "StopAt", "pipeline", "redact_secrets", "tidy_whitespace", "whole_words"]
__all__ += ["FINAL_SESSION_STATES", "SessionFinished", "StreamSession", "StreamSessions", "TooManyStreams"]
