"""The book build's guard against a lost zmq wake-up (``_ext/zmq_rearm.py``).

Reproduces, without a kernel, what stalls an ``interact`` cell under nbclient: a
reply arrives on an asyncio socket that has a poll pending, and before the event
loop looks at the socket, jupyter_client's ``Session.send`` sends on the same
socket through a plain shadow of it. Without the fix the poll returns only when
its timer fires; with it, at once.
"""

import asyncio
import sys
import time
from pathlib import Path

import pytest

zmq = pytest.importorskip("zmq")
import zmq.asyncio  # noqa: E402
from jupyter_client.session import Session  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
import zmq_rearm  # noqa: E402

POLL_TIMEOUT_S = 2.0


async def _seconds_until_reply_is_seen() -> float:
    ctx = zmq.asyncio.Context()
    kernel = zmq.Context.instance().socket(zmq.DEALER)       # the kernel: a plain socket
    port = kernel.bind_to_random_port("tcp://127.0.0.1")
    client = ctx.socket(zmq.DEALER)                          # nbclient's shell channel
    client.connect(f"tcp://127.0.0.1:{port}")
    try:
        client.send(b"hello")
        kernel.recv()
        await asyncio.sleep(0.1)
        poll = asyncio.ensure_future(client.poll(int(POLL_TIMEOUT_S * 1000)))
        await asyncio.sleep(0.05)                            # the poll is waiting
        start = time.monotonic()
        kernel.send(b"execute_reply")                       # the reply arrives ...
        time.sleep(0.05)                                     # ... while the client is busy
        Session(key=b"").send(client, "comm_msg", {"data": {}})   # the Output widget's sync
        events = await poll
        assert events & zmq.POLLIN
        return time.monotonic() - start
    finally:
        client.close(0)
        kernel.close(0)
        ctx.term()


def test_reply_is_seen_at_once_with_the_fix():
    zmq_rearm.install()
    assert asyncio.run(_seconds_until_reply_is_seen()) < 0.5 * POLL_TIMEOUT_S


def test_without_the_fix_the_poll_waits_for_its_timer():
    """The control: the stall is real here, so the test above can fail."""
    zmq_rearm.uninstall()
    try:
        waited = asyncio.run(_seconds_until_reply_is_seen())
    finally:
        zmq_rearm.install()
    if waited < 0.5 * POLL_TIMEOUT_S:
        pytest.skip(f"the lost wake-up no longer happens ({waited:.2f} s): "
                    "pyzmq or jupyter_client fixed it, and _ext/zmq_rearm.py can go")
    assert waited >= 0.9 * POLL_TIMEOUT_S
