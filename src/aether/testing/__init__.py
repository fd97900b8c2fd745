"""Helpers for testing Aether services and clients with real processes.

- :class:`ServiceProcess` starts ``aether service run`` in a subprocess and
  waits for its sd_notify ``READY=1`` on a socket it binds (an event, not a
  sleep); ``stop()`` sends SIGTERM and waits, ``kill()`` kills only that pid.
- :func:`isolated_runtime` gives a private runtime directory so sockets and
  named objects of one test never meet another's.
"""

from .child import ScriptedChild as ScriptedChild
from .process import (
    ServiceProcess as ServiceProcess,
    isolated_runtime as isolated_runtime,
    python_env as python_env,
    sigint_as_from_a_terminal as sigint_as_from_a_terminal,
)
from .waiting import wait_until as wait_until
