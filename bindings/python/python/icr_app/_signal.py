"""The change signal of one App, and what happens in the child of a fork.

The core's contract: an operation told to ``Wait`` must wake as soon as any operation on the same
App reports back or is abandoned, and the decision to wait must not miss a report made after its
poll. Each App has one ``_Signal``: a counter, bumped (under a ``threading.Condition``) after
every report and abandon, by every client of that App, sync or async, in any thread.

A waiter reads the counter *before* it polls, then waits only if the counter, read again under
the condition's lock, has not moved. A report is made in the core first and counted after, so a
report the poll did not see is counted after the first read: the waiter sees the counter move,
or is woken by the ``notify_all`` that follows the count. Async waiters park a future, which
the notifier resolves in the waiter's own event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from typing import Any

from . import _icr_app


class _Signal:
    """Counts reports and abandons of the operations on one App, and wakes those that wait."""

    __slots__ = ("__weakref__", "_cond", "_waiters", "gen")

    def __init__(self) -> None:
        self._reset()
        _signals.add(self)

    def _reset(self) -> None:
        self.gen = 0
        self._cond = threading.Condition(threading.Lock())
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def notify(self) -> None:
        """Counts a report (or abandon) and wakes every waiter, sync and async."""
        with self._cond:
            self.gen += 1
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        if not waiters:
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, future in waiters:
            if loop is current:
                _wake(future)
            else:
                try:
                    loop.call_soon_threadsafe(_wake, future)
                except RuntimeError:  # that loop is closed: nobody is waiting there any more
                    pass

    def wait(self, seen: int, until: float) -> None:
        """Blocks until the counter moves past ``seen`` or until ``until`` (epoch seconds)."""
        with self._cond:
            if self.gen == seen:
                self._cond.wait(max(until - time.time(), 0.001))

    async def wait_async(self, seen: int, until: float) -> None:
        """Awaits until the counter moves past ``seen`` or until ``until`` (epoch seconds)."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self.gen != seen:
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, max(until - time.time(), 0.001))
        except asyncio.TimeoutError:
            pass
        finally:
            if not future.done():
                with self._cond:
                    try:
                        self._waiters.remove((loop, future))
                    except ValueError:
                        pass


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_signals: weakref.WeakSet[_Signal] = weakref.WeakSet()
_create = threading.Lock()


def signal_of(app: Any) -> _Signal:
    """The App's signal (made on first use, kept on the App)."""
    signal: _Signal | None = getattr(app, "_icr_signal", None)
    if signal is None:
        with _create:
            signal = getattr(app, "_icr_signal", None)
            if signal is None:
                signal = _Signal()
                app._icr_signal = signal
    return signal


class _ForkState:
    """``epoch`` grows in the child of every fork: clients drop the HTTP connections they made."""

    epoch = 0


fork_state = _ForkState()


def _after_fork_in_child() -> None:
    global _create
    fork_state.epoch += 1
    _create = threading.Lock()
    _icr_app._after_fork_in_child()
    for signal in list(_signals):
        signal._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
