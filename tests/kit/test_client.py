"""StrictStreamingClient and TaskStreamingClient against real a2a-sdk agents and kit agents, in every dialect."""
import asyncio
import contextlib

import pytest
from python_a2a import A2AConnectionError, A2AStreamingError, Task

import streaming_kit as kit
from a2a_rig import DEFAULT_TEXT, start_official_agent
import streaming_kit.client as client_module  # its names read at test time, so each test fails on its own


async def collect(url: str, message: str = "hi", **options) -> tuple[list[dict], str]:
    client = kit.StrictStreamingClient(url, timeout=15, **options)
    chunks = [chunk async for chunk in client.stream_response(message)]
    return chunks, client.dialect


class WordsAgent(kit.StreamingAgent):
    """Streams the words of the message back; 'fail' fails after one word."""

    async def stream_response(self, message):
        text = kit.message_text(message)
        for word in text.split():
            yield word + " "
            if text == "fail now":
                raise RuntimeError("deliberate failure")


class StepsAgent(kit.TaskStreamingAgent):
    """Three artifact chunks, a short pause before each."""

    async def run_task(self, message):
        for step in range(3):
            await asyncio.sleep(0.1)
            yield kit.TaskUpdate.chunk("steps", f"step{step} ", append=step > 0, last_chunk=step == 2)


@pytest.fixture(scope="module")
def words_url():
    with kit.serve(WordsAgent()) as url:
        yield url


# ---------------------------------------------------------------- against official a2a-sdk agents
@pytest.mark.parametrize("mode, dialect", [("v1", "1.0"), ("v1-compat", "1.0"), ("v03", "0.3")])
def test_streams_every_chunk_in_order_from_an_official_agent(mode, dialect):
    with start_official_agent(mode, chunks=5) as (url, _):
        chunks, chosen = asyncio.run(collect(url))
    assert chosen == dialect  # the card decides: 1.0 when offered, else 0.3
    assert "".join(chunk["content"] for chunk in chunks) == DEFAULT_TEXT
    assert [chunk["index"] for chunk in chunks] == list(range(5))
    assert all(set(chunk) == {"content", "index", "append"} for chunk in chunks)


def test_a_compat_agent_streams_over_v03_when_forced():
    with start_official_agent("v1-compat", chunks=4) as (url, _):
        chunks, chosen = asyncio.run(collect(url, dialect="0.3"))
    assert chosen == "0.3" and "".join(c["content"] for c in chunks) == DEFAULT_TEXT


@pytest.mark.parametrize("dialect", ["1.0", "0.3"])
def test_a_stream_without_a_terminal_state_raises(dialect):
    with start_official_agent("broken-no-terminal", chunks=3) as (url, _):
        with pytest.raises(kit.StreamTruncatedError, match="without a terminal task state"):
            asyncio.run(collect(url, dialect=dialect))


def test_after_index_resumes_after_that_chunk_over_a2a():
    with start_official_agent("v1", chunks=5) as (url, _):
        client = kit.StrictStreamingClient(url)
        chunks = asyncio.run(_gather(client.stream_response("hi", after_index=2)))
    assert [chunk["index"] for chunk in chunks] == [3, 4]


async def _gather(stream):
    return [item async for item in stream]


def test_non_streaming_send_reads_the_official_agents_answer():
    with start_official_agent("v03", chunks=3) as (url, _):
        reply = asyncio.run(kit.StrictStreamingClient(url).send_message_async("hi"))
    assert kit.message_text(reply) == DEFAULT_TEXT


@pytest.mark.parametrize("mode", ["v1", "v03"])
def test_task_client_drops_resubscribes_and_reaches_completed(mode):
    with start_official_agent(mode, chunks=5, delay=0.2) as (url, _):
        client, task = kit.TaskStreamingClient(url), Task(message=kit.text_message("hi").to_dict())

        async def run():
            seen = []
            async with contextlib.aclosing(client.tasks_send_subscribe(task)) as updates:
                async for update in updates:
                    seen.append(update)
                    if update.artifacts:
                        break  # drop after the first chunk
            async with contextlib.aclosing(client.tasks_resubscribe(task.id, after=seen[-1].metadata["seq"])) as updates:
                seen += [update async for update in updates]
            return seen
        updates = asyncio.run(run())
    assert updates[-1].status.state.value == "completed"
    assert all(update.id == task.id for update in updates)  # the agent's id, given to the task sent
    seqs = [update.metadata["seq"] for update in updates]
    assert seqs == sorted(set(seqs))


def test_task_client_cancels_an_official_agents_task():
    with start_official_agent("v1", chunks=5, delay=0.3) as (url, _):
        client, task = kit.TaskStreamingClient(url), Task(message=kit.text_message("hi").to_dict())

        async def run():
            states = []
            async with contextlib.aclosing(client.tasks_send_subscribe(task)) as updates:
                async for update in updates:
                    states.append(update.status.state.value)
                    if len(states) == 1:
                        states.append((await client.cancel_task(task.id)).status.state.value)
            return states
        states = asyncio.run(run())
    assert states[1] == "canceled" and states[-1] == "canceled"


# ---------------------------------------------------------------- against kit agents, every dialect
@pytest.mark.parametrize("dialect", [None, "python-a2a", "1.0", "0.3"])
def test_kit_agent_streams_the_same_chunks_in_every_dialect(words_url, dialect):
    chunks, chosen = asyncio.run(collect(words_url, "one two three", dialect=dialect))
    assert chosen == (dialect or "python-a2a")  # the kit's card says /stream is there
    assert [(c["content"], c["index"]) for c in chunks] == [("one ", 0), ("two ", 1), ("three ", 2)]


@pytest.mark.parametrize("dialect", ["1.0", "0.3"])
def test_an_agent_error_over_a2a_raises_with_the_tasks_reason(words_url, dialect):
    with pytest.raises(client_module.TaskEndedError, match="deliberate failure") as raised:
        asyncio.run(collect(words_url, "fail now", dialect=dialect))
    assert raised.value.state == "failed"


def test_an_agent_error_over_stream_raises(words_url):
    with pytest.raises(A2AStreamingError, match="deliberate failure"):
        asyncio.run(collect(words_url, "fail now"))


@pytest.mark.parametrize("dialect", ["python-a2a", "1.0", "0.3"])
def test_task_client_streams_a_kit_task_in_every_dialect(dialect):
    with kit.serve(StepsAgent()) as url:
        client, task = kit.TaskStreamingClient(url, dialect=dialect), Task(message=kit.text_message("go").to_dict())
        updates = asyncio.run(_gather(client.tasks_send_subscribe(task)))
    text = "".join(kit.artifact_text(a) for u in updates for a in u.artifacts)
    assert text == "step0 step1 step2 " and updates[-1].status.state.value == "completed"
    assert [u.metadata["seq"] for u in updates] == list(range(len(updates)))


def test_a_dead_server_reads_well():
    with kit.serve(WordsAgent()) as url:
        pass  # closed again
    with pytest.raises(A2AConnectionError, match="cannot connect to .*: is the server running"):
        asyncio.run(collect(url))


def test_an_unknown_dialect_is_refused():
    with pytest.raises(ValueError, match="dialect must be one of"):
        kit.StrictStreamingClient("http://127.0.0.1:1", dialect="0.2")


# ---------------------------------------------------------------- what A2A lets the client check
def artifact(text, append, last=False, artifact_id="a"):
    return {"kind": "artifact", "task_id": "t", "artifact_id": artifact_id, "name": "", "text": text,
            "append": append, "last_chunk": last}


def test_a_first_chunk_that_appends_means_chunks_were_lost():
    with pytest.raises(A2AStreamingError, match="chunks were lost"):
        client_module.AnswerChecker("agent").feed(artifact("tail", append=True))


def test_a_chunk_after_last_chunk_means_one_was_repeated():
    checker = client_module.AnswerChecker("agent")
    checker.feed(artifact("whole", append=False, last=True))
    with pytest.raises(A2AStreamingError, match="repeated"):
        checker.feed(artifact("again", append=True))


def test_a_final_task_whose_artifact_differs_from_the_stream_means_a_loss():
    checker = client_module.AnswerChecker("agent")
    checker.feed(artifact("one ", append=False))
    with pytest.raises(A2AStreamingError, match="lost or repeated"):
        checker.feed({"kind": "task", "task_id": "t", "state": "completed", "reason": "",
                      "artifacts": [("a", "one two ")]})
