"""uvicorn's h11 protocol with a deadline for the request line and headers: slow clients are cut off.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but not a client that opens a
connection and sends its headers a byte at a time (slow loris), nor one that trickles an unread body
after its response: each byte it receives cancels the keep-alive timer. Here every connection must
start its next request within ``read_timeout_s`` of opening or of its last response, else it is closed
(with a 408 when it never had a response). The body then has its own deadline in the app
(:func:`visiontrain.deploy.request_body.read_body`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def deadline_protocol(read_timeout_s: float) -> type[H11Protocol]:
    """An H11Protocol class for ``uvicorn.run(http=...)`` that enforces ``read_timeout_s``."""

    class DeadlineH11Protocol(H11Protocol):
        header_timeout = float(read_timeout_s)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_deadline()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            self._cancel_header_deadline()
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline, self.cycle)

        def _cancel_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_deadline(self, cycle_when_armed: Any) -> None:
            """No request began since the timer was armed: close (a new connection gets a 408 first)."""
            self._header_timer = None
            if self.cycle is not cycle_when_armed or self.transport.is_closing():
                return
            if cycle_when_armed is not None and not cycle_when_armed.response_complete:
                return  # a pipelined request began as the timer was armed and is being answered
            if cycle_when_armed is None:  # after a response, closing is enough: that client had its answer
                detail = f"no complete request within read_timeout_s ({self.header_timeout:g} s)"
                body = json.dumps({"detail": detail}).encode()
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    return DeadlineH11Protocol
