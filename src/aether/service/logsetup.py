"""Where a service's log goes: the journal, syslog, or stderr.

- Under systemd (``$JOURNAL_STREAM`` names our stderr): one line per record
  on stderr with a ``<N>`` syslog priority prefix (sd-daemon(3)); journald
  turns it into the record's priority.
- Otherwise, if ``/dev/log`` exists: syslog (facility daemon), and stderr too
  so a service run in a terminal still shows its log.
- Otherwise: stderr.

Every line names the service; audit lines (``aether.audit``) also carry the
caller's uid. Security findings go to the ``aether.security`` logger.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import stat
import sys

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}
#: Loggers a running service always records at INFO: start/stop, audit, findings.
SERVICE_LOGGERS = ("aether.service", "aether.audit", "aether.security")


def journal_stream_is_stderr(env: dict[str, str] | None = None, fd: int = 2) -> bool:
    """True if ``$JOURNAL_STREAM`` (``DEV:INODE``) is the descriptor ``fd``."""
    value = (env if env is not None else os.environ).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(fd)
        return (int(dev), int(ino)) == (st.st_dev, st.st_ino)
    except (ValueError, OSError):
        return False


def priority(levelno: int) -> int:
    for level in sorted(PRIORITY, reverse=True):
        if levelno >= level:
            return PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        # One journal record per line: continuation lines keep the priority.
        prefix = f"<{priority(record.levelno)}>{self.service}: {record.name}: "
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class PlainFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)s " + service.replace("%", "%%")
                         + "[%(process)d] %(name)s: %(message)s")


def _dev_log_available(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def configure_service_logging(service: str, *, level: int | None = None,
                              dev_log: str = "/dev/log") -> str:
    """Install the handlers for a service process; returns where logs go
    (``"journal"``, ``"syslog"`` or ``"stderr"``)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if level is not None:
        root.setLevel(level)
    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    if journal_stream_is_stderr():
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter(service))
        root.addHandler(handler)
        return "journal"
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(PlainFormatter(service))
    root.addHandler(stderr)
    if _dev_log_available(dev_log):
        try:
            syslog = logging.handlers.SysLogHandler(
                address=dev_log, facility=logging.handlers.SysLogHandler.LOG_DAEMON,
                socktype=socket.SOCK_DGRAM)
        except OSError:
            return "stderr"
        syslog.ident = f"aether-{service}[{os.getpid()}]: "
        syslog.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(syslog)
        return "syslog"
    return "stderr"
