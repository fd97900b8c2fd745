"""A handle on one operation in flight: progress, cancel, result."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aether.schema import ProgressInfo

if TYPE_CHECKING:
    from .client import Client

ProgressCallback = Callable[["Operation"], None]
_NO_PROGRESS = ProgressInfo()  # frozen: one shared instance, not one per call


class Operation:
    """Returned by :meth:`Client.start`. ``wait()`` drives it to the end;
    ``cancel()`` may be called from any thread."""

    def __init__(self, client: Client, op_id: int, name: str, code: int,
                 on_progress: ProgressCallback | None) -> None:
        self.client = client
        self.op_id = op_id
        self.name = name
        self.code = code
        self.on_progress = on_progress
        self.permille = 0
        self.progress_info = _NO_PROGRESS
        self.started = False
        self.finished = False
        self.cancel_requested = False
        self.start_time = time.monotonic()
        self._result: Any = None
        self._error: BaseException | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start_time

    def cancel(self) -> None:
        """Ask the service to cancel (it may still finish first)."""
        if self.finished or self.cancel_requested:
            return
        self.cancel_requested = True
        self.client._send_cancel(self)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the end and return the result, or raise its error.

        Raises:
            OperationError (or a subclass) for a status other than OK.
            OutcomeUnknownError if the connection broke while it ran.
            AetherTimeoutError if ``timeout`` ran out (the op keeps running).
        """
        if not self.finished:
            self.client._drive(self, timeout)
        if self._error is not None:
            raise self._error
        return self._result

    result = wait

    def _set_progress(self, permille: int, info: ProgressInfo) -> None:
        self.permille = permille
        self.progress_info = info
        if self.on_progress is not None:
            self.on_progress(self)

    def _finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self._result = result
        self._error = error
        self.finished = True

    def __repr__(self) -> str:
        state = "done" if self.finished else "running"
        return f"<Operation {self.name}#{self.op_id} {state} {self.permille / 10:.1f}%>"
