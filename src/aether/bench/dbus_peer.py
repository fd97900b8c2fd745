"""D-Bus through dbus-fast and a private ``dbus-daemon`` (Debian ``dbus``).

The benchmark starts its own bus from a config file in a temporary
directory (nothing touches the system or session bus) and kills the daemon by
its pid when it is done, also on failure. The server owns a well-known name
and answers ``Echo(ay) -> ay`` from a low-level message handler; the client
uses ``MessageBus.call(Message)``: the fastest dbus-fast offers (a proxy
object only adds work). Every call makes two hops through the daemon.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUS_NAME = "org.aether.Bench"
OBJECT_PATH = "/org/aether/Bench"
INTERFACE = "org.aether.Bench"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <limit name="max_message_size">268435456</limit>
  <limit name="max_incoming_bytes">1073741824</limit>
  <limit name="max_outgoing_bytes">1073741824</limit>
  <limit name="max_completed_connections">4096</limit>
  <limit name="max_connections_per_user">4096</limit>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def daemon_binary() -> str | None:
    return shutil.which("dbus-daemon")


class PrivateBus:
    """A dbus-daemon of our own; ``address`` once started; ``stop()`` kills it by pid."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        binary = daemon_binary()
        if binary is None:
            raise FileNotFoundError("dbus-daemon is not installed (Debian package dbus)")
        self.dir = Path(tempfile.mkdtemp(prefix="aether-bench-dbus-"))
        config = self.dir / "bus.conf"
        config.write_text(_CONFIG.format(socket=self.dir / "bus"))
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(
            [binary, f"--config-file={config}", "--nofork", "--print-address=1",
             "--nopidfile"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            preexec_fn=preexec)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            self.stop()
            raise RuntimeError("dbus-daemon exited before printing its address")
        self.address = line

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def serve(address: str, *, sink: bool, ready: Callable[[], None]) -> None:
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    async def main() -> None:
        bus = await MessageBus(bus_address=address).connect()
        await bus.request_name(BUS_NAME)

        def handler(msg: Message) -> Any:
            if msg.message_type is MessageType.METHOD_CALL and msg.member == "Echo":
                return Message.new_method_return(msg, "ay", [b"k" if sink else msg.body[0]])
            return None

        bus.add_message_handler(handler)
        ready()
        await asyncio.Future()

    asyncio.run(main())


class DbusClient:
    """The client half; it times its own loop because every call is awaited."""

    def __init__(self, address: str) -> None:
        from dbus_fast.aio import MessageBus

        self.loop = asyncio.new_event_loop()

        async def connect() -> Any:
            return await MessageBus(bus_address=address).connect()

        self.bus = self.loop.run_until_complete(connect())

    def wait_for_server(self, timeout: float = 20.0) -> None:
        from dbus_fast import Message

        async def has_owner() -> bool:
            reply = await self.bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="NameHasOwner", signature="s",
                body=[BUS_NAME]))
            return bool(reply.body[0])

        deadline = time.monotonic() + timeout
        while not self.loop.run_until_complete(has_owner()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{BUS_NAME} did not appear on the private bus")
            time.sleep(0.01)

    def samples(self, payload: bytes, warmup: int, count: int) -> list[int]:
        from dbus_fast import Message, MessageType

        bus = self.bus
        clock = time.perf_counter_ns

        async def call() -> None:
            reply = await bus.call(Message(destination=BUS_NAME, path=OBJECT_PATH,
                                           interface=INTERFACE, member="Echo", signature="ay",
                                           body=[payload]))
            if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
                raise RuntimeError(f"dbus call failed: {reply and reply.body}")

        async def run() -> list[int]:
            for _ in range(warmup):
                await call()
            out = []
            for _ in range(count):
                t0 = clock()
                await call()
                out.append(clock() - t0)
            return out

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.bus.disconnect()
        try:
            self.loop.run_until_complete(self.bus.wait_for_disconnect())
        except Exception:
            pass
        self.loop.close()
