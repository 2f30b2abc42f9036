"""Workers die, clients leave: nothing hangs, nothing else is disturbed."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import zmq

from protocol.framing import Encoder, from_worker_decoder
from protocol.messages import Ping, Pong, Restart, WorkerStats
from tests.e2e.conftest import BROKEN, LLAMA, QWEN
from tests.e2e.harness import Stack

HI = [{"role": "user", "content": "hi"}]
# Long-running requests are greedy: sampling from a random-weight model can
# draw its end-of-sequence token at any step, greedy decoding deterministically
# does not (on this prompt), so these streams reliably outlive the checks.


@pytest.fixture(autouse=True)
def every_model_serves_again_afterwards(stack: Stack) -> Iterator[None]:
    """The stack is shared by the whole session: a test here that kills or
    restarts a model (and may fail half-way) must not hand the next test,
    in any module, a model that is still coming back."""
    yield
    stack.wait_until(
        lambda h: all(m["state"] == "ready" for name, m in h["models"].items() if name != BROKEN),
        60,
        "every model to be ready again",
    )


def test_each_model_process_names_its_model_in_ps(stack: Stack) -> None:
    for model in (LLAMA, QWEN):
        pid = stack.health()["models"][model]["pid"]
        cmdline = subprocess.check_output(["ps", "-o", "args=", "-p", str(pid)], text=True)
        assert model in cmdline


def test_client_disconnect_mid_stream_frees_the_batch_slot(
    client: openai.OpenAI, stack: Stack
) -> None:
    stream = client.chat.completions.create(
        model=LLAMA, messages=HI, max_tokens=50_000, temperature=0, stream=True
    )
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received >= 2:
            break
    # /health shows the worker's last heartbeat, at most one interval old.
    stack.wait_until(lambda h: h["models"][LLAMA]["active"] == 1, 2, "the stream to be active")
    stream.close()  # the client goes away with ~50k tokens still to generate
    stack.wait_until(
        lambda h: h["models"][LLAMA]["active"] == 0 and h["models"][LLAMA]["in_flight"] == 0,
        timeout=5,
        what="the cancelled sequence to leave the batch",
    )


def test_bad_frames_and_stray_restarts_are_dropped_the_worker_serves_on(stack: Stack) -> None:
    endpoint = _endpoint(stack, QWEN)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        wrong_direction = Pong(0, "x", 1, "m", "llm", "ready", 0, WorkerStats())
        for junk in (b"", b"\x07garbage", b"\x01\xc1", Encoder().encode(wrong_direction)):
            sock.send(junk)
        sock.send(Encoder().encode(Ping(seq=41)))
        assert sock.poll(5000)
        pong = from_worker_decoder().decode(sock.recv())
        assert isinstance(pong, Pong) and pong.seq == 41 and pong.state == "ready"

        # A Restart meant for an earlier process (it waited in a queue while
        # that one exited) leaves this one serving.
        sock.send(Encoder().encode(Restart(graceful=False, instance="an-earlier-one")))
        sock.send(Encoder().encode(Ping(seq=42)))
        assert sock.poll(5000)
        again = from_worker_decoder().decode(sock.recv())
        assert isinstance(again, Pong) and again.seq == 42 and again.state == "ready"
        assert again.instance == pong.instance
    finally:
        sock.close()


def test_killed_worker_is_503_at_once_others_keep_serving_and_it_comes_back(
    client: openai.OpenAI, stack: Stack
) -> None:
    before = stack.health()["models"][LLAMA]
    # A long stream in flight when the worker dies must end with an error, not hang.
    outcome: dict[str, BaseException | None] = {}

    def stream_until_error() -> None:
        try:
            for _ in client.chat.completions.create(
                model=LLAMA, messages=HI, max_tokens=50_000, temperature=0, stream=True
            ):
                pass
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    reader = threading.Thread(target=stream_until_error)
    reader.start()
    stack.wait_until(lambda h: h["models"][LLAMA]["active"] == 1, 5, "stream to start")

    os.kill(before["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    with pytest.raises(openai.InternalServerError) as err:
        while True:  # the first request after the kill may race the disconnect event
            client.chat.completions.create(model=LLAMA, messages=HI, max_tokens=2)
            assert time.monotonic() - killed_at < 1.0, "still answering 1 s after kill -9"
    assert err.value.status_code == 503
    assert time.monotonic() - killed_at < 1.0
    assert LLAMA in err.value.message

    reader.join(timeout=5)
    assert not reader.is_alive(), "the in-flight stream hung"
    assert isinstance(outcome["error"], openai.APIError)

    # The other model is untouched.
    other = client.chat.completions.create(model=QWEN, messages=HI, max_tokens=4)
    assert other.choices[0].finish_reason in ("stop", "length")

    after = stack.wait_state(LLAMA, "ready", timeout=60)["models"][LLAMA]
    assert after["pid"] != before["pid"]
    assert after["restarts"] >= 1
    reply = client.chat.completions.create(model=LLAMA, messages=HI, max_tokens=4)
    assert reply.usage.completion_tokens >= 1


def _endpoint(stack: Stack, model: str) -> str:
    from protocol.config import load_config

    return load_config(stack.config).model(model).endpoint


def test_client_that_gives_up_on_a_non_streamed_request_frees_the_slot(stack: Stack) -> None:
    body = {"model": LLAMA, "messages": HI, "max_tokens": 50_000, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stack.base_url}/v1/chat/completions", json=body, timeout=1.0)
    stack.wait_until(
        lambda h: h["models"][LLAMA]["active"] == 0 and h["models"][LLAMA]["in_flight"] == 0,
        timeout=5,
        what="the abandoned request to leave the batch",
    )


def test_sigterm_drains_a_worker_then_it_restarts(client: openai.OpenAI, stack: Stack) -> None:
    """Graceful restart: running requests finish, new ones get 503, then it is back."""
    pid = stack.health()["models"][QWEN]["pid"]
    stream = client.chat.completions.create(
        model=QWEN,
        messages=HI,
        max_tokens=1500,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = iter(stream)
    next(chunks)
    stack.wait_until(lambda h: h["models"][QWEN]["active"] == 1, 5, "the stream to run")
    os.kill(pid, signal.SIGTERM)
    stack.wait_state(QWEN, "draining", timeout=5)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model=QWEN, messages=HI, max_tokens=2)
    assert err.value.status_code == 503 and "draining" in err.value.message

    rest = list(chunks)  # the running request is not cut off
    assert rest[-1].usage is not None and rest[-1].usage.completion_tokens == 1500

    after = stack.wait_state(QWEN, "ready", timeout=60)["models"][QWEN]
    assert after["pid"] != pid
    assert client.chat.completions.create(model=QWEN, messages=HI, max_tokens=2).usage


def test_admin_restart_drains_a_model_or_stops_it_now(client: openai.OpenAI, stack: Stack) -> None:
    """POST /admin/models/{model}/restart: graceful, the running stream
    finishes; not graceful, it ends at once with a 503; each time a new process
    serves, and the other models are untouched."""
    admin = f"{stack.base_url}/admin/models/{QWEN}/restart"
    pid = stack.health()["models"][QWEN]["pid"]
    stream = client.chat.completions.create(
        model=QWEN, messages=HI, max_tokens=300, temperature=0, stream=True
    )
    chunks = iter(stream)
    next(chunks)
    r = httpx.post(admin, timeout=5)
    assert r.status_code == 202
    assert r.json() == {"model": QWEN, "pid": pid, "graceful": True, "state": "draining"}
    rest = list(chunks)
    assert rest[-1].choices[0].finish_reason == "length"
    pid = stack.wait_until(
        lambda h: h["models"][QWEN]["state"] == "ready" and h["models"][QWEN]["pid"] != pid,
        60,
        "a new process after the graceful restart",
    )["models"][QWEN]["pid"]

    stream = client.chat.completions.create(
        model=QWEN, messages=HI, max_tokens=50_000, temperature=0, stream=True
    )
    chunks = iter(stream)
    next(chunks)
    r = httpx.post(admin, json={"graceful": False}, timeout=5)
    assert r.status_code == 202 and r.json()["state"] == "restarting"
    with pytest.raises(openai.APIError) as err:
        for _ in chunks:
            pass
    assert QWEN in str(err.value)
    assert client.chat.completions.create(model=LLAMA, messages=HI, max_tokens=2).usage
    after = stack.wait_until(
        lambda h: h["models"][QWEN]["state"] == "ready" and h["models"][QWEN]["pid"] != pid,
        60,
        "a new process after the immediate restart",
    )["models"][QWEN]
    assert after["pid"] != pid

    bad = httpx.post(admin, content=b'{"graceful": "yes"}', timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    unknown = httpx.post(f"{stack.base_url}/admin/models/nope/restart", timeout=5)
    assert unknown.status_code == 404
