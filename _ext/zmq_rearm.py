"""Stops a cell of the book build from stalling for the whole cell timeout.

The book is executed by nbclient over zmq.asyncio sockets. When a cell shows an
``ipywidgets.interact``, nbclient imitates the widget's Output area and sends a
``comm_msg`` back on the shell socket while it waits for the cell's
``execute_reply`` on that same socket. jupyter_client's ``Session.send`` does that
send through a plain ``zmq.Socket.shadow`` of the asyncio socket; libzmq then
consumes the socket's edge-triggered wake-up, and if the reply had already arrived,
the pending asyncio poll hears of it only when its timer (the cell timeout, 600 s)
fires. The build then carries on as if nothing happened, ten minutes late.

pyzmq's rule for edge-triggered sockets is to read ``zmq.EVENTS`` through the
asyncio socket after any send that bypassed it: that re-arms the socket and wakes
a pending poll when a message is waiting. This module wraps ``Session.send`` and
``Session.send_raw`` to do exactly that, at the cost of one socket-option read per
message sent on an asyncio socket. (nbclient issue #312; remove this once
jupyter_client or nbclient handle it.)

Loaded as a Sphinx extension by the book build (``_config.yml``), and imported by
``benchmarks/bench_chapters.py``; ``tests/test_kernel_stall.py`` reproduces the stall
and checks the fix.
"""

from __future__ import annotations

import functools

import zmq
import zmq.asyncio
from jupyter_client.session import Session

_PATCHED = "_pgkit_rearm"


def _rearm(stream) -> None:
    if isinstance(stream, zmq.asyncio.Socket) and not stream.closed:
        stream.get(zmq.EVENTS)            # re-arms the asyncio socket's edge-triggered fd


def _with_rearm(send):
    @functools.wraps(send)
    def wrapper(self, stream, *args, **kwargs):
        try:
            return send(self, stream, *args, **kwargs)
        finally:
            _rearm(stream)
    setattr(wrapper, _PATCHED, send)
    return wrapper


def install() -> None:
    """Wrap Session.send and Session.send_raw (idempotent)."""
    for name in ("send", "send_raw"):
        method = getattr(Session, name)
        if not hasattr(method, _PATCHED):
            setattr(Session, name, _with_rearm(method))


def uninstall() -> None:
    """Undo :func:`install` (for the regression test's control case)."""
    for name in ("send", "send_raw"):
        method = getattr(Session, name)
        if hasattr(method, _PATCHED):
            setattr(Session, name, getattr(method, _PATCHED))


def setup(app):                           # a Sphinx extension
    install()
    return {"parallel_read_safe": True, "parallel_write_safe": True}


install()
