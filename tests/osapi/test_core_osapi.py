"""aether.osapi: the syscalls the memory transport relies on, with real processes."""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest

from aether import osapi
from aether.errors import ClosedResourceError, OSAPIError, PartialTransferError


def _mapping_of(block: osapi.PrivateBlock) -> osapi.MemoryMapping:
    maps = osapi.read_maps(os.getpid())
    (mapping,) = osapi.mappings_covering(maps, block.address, block.size)
    return mapping


class TestPrivateBlock:
    def test_private_anonymous_page_aligned_never_executable(self):
        with osapi.PrivateBlock(5000, osapi.PROT_READ) as block:
            assert block.size == 2 * osapi.PAGE_SIZE
            assert block.address % osapi.PAGE_SIZE == 0
            mapping = _mapping_of(block)
            assert mapping.private and mapping.anonymous
            assert mapping.perms.startswith("r--")
            with pytest.raises(ValueError):
                block.protect(osapi.PROT_READ | osapi.PROT_EXEC)
        with pytest.raises(ValueError):
            osapi.PrivateBlock(4096, osapi.PROT_READ | osapi.PROT_WRITE | osapi.PROT_EXEC)

    def test_writable_restores_protection(self):
        with osapi.PrivateBlock(4096, osapi.PROT_READ) as block:
            with block.writable() as view:
                view[:4] = b"abcd"
                assert _mapping_of(block).perms.startswith("rw-")
            assert block.prot == osapi.PROT_READ
            assert _mapping_of(block).perms.startswith("r--")
            assert bytes(block.view[:4]) == b"abcd"

    @pytest.mark.parametrize("length", [1, osapi.PAGE_SIZE, osapi.PAGE_SIZE + 1])
    def test_a_writable_prefix_opens_only_its_own_pages(self, length):
        with osapi.PrivateBlock(8 * osapi.PAGE_SIZE, osapi.PROT_READ) as block:
            opened = osapi.round_to_pages(length)
            with block.writable(length) as view:
                view[length - 1] = 7
                maps = osapi.mappings_covering(osapi.read_maps(os.getpid()),
                                               block.address, block.size)
                # Clipped to the block: the kernel merges a part with a
                # neighbouring mapping of the same kind and permissions (an
                # earlier test's retired block, say) into one line of maps.
                perms = {(max(m.start, block.address) - block.address,
                          min(m.end, block.address + block.size) - block.address): m.perms[:3]
                         for m in maps}
                assert perms == {(0, opened): "rw-", (opened, block.size): "r--"}
            assert block.prot == osapi.PROT_READ
            maps = osapi.mappings_covering(osapi.read_maps(os.getpid()),
                                           block.address, block.size)
            assert {m.perms[:3] for m in maps} == {"r--"}
            assert block.view[length - 1] == 7

    def test_pattern_fill_and_check(self):
        with osapi.PrivateBlock(8192, osapi.PROT_READ) as block:
            block.fill_pattern(0x1337D00D)
            assert block.holds_only(0x1337D00D)
            assert bytes(block.view[:4]) == b"\x0d\xd0\x37\x13"  # little-endian word
            assert not block.is_zero()

    def test_private_means_a_forked_child_does_not_share_it(self):
        with osapi.PrivateBlock(4096) as block:
            block.view[0] = 1
            pid = os.fork()
            if pid == 0:
                block.view[0] = 99
                os._exit(0)
            os.waitpid(pid, 0)
            assert block.view[0] == 1

    def test_closed_block_refuses_use(self):
        block = osapi.PrivateBlock(4096)
        block.close()
        block.close()  # idempotent
        with pytest.raises(ClosedResourceError):
            block.protect(osapi.PROT_READ)
        with pytest.raises(ClosedResourceError):
            block.write_pieces(((0, b"x"),))

    @pytest.mark.parametrize("forced", [True, False], ids=["proc-self-mem", "mprotect"])
    def test_write_pieces_writes_a_read_only_block_and_leaves_it_read_only(self, forced):
        with osapi.PrivateBlock(3 * osapi.PAGE_SIZE, osapi.PROT_READ) as block:
            tail = osapi.PAGE_SIZE + 10
            block.write_pieces(((32, b"payload"), (0, b"header"), (tail, bytearray(b"z" * 9))),
                               forced=forced)
            assert bytes(block.view[:6]) == b"header"
            assert bytes(block.view[32:39]) == b"payload"
            assert bytes(block.view[tail:tail + 9]) == b"z" * 9
            assert block.prot == osapi.PROT_READ
            maps = osapi.mappings_covering(osapi.read_maps(os.getpid()),
                                           block.address, block.size)
            assert {m.perms[:3] for m in maps} == {"r--"}

    def test_the_forced_write_path_is_the_one_taken_here(self):
        from aether.osapi import blocks

        with osapi.PrivateBlock(4096, osapi.PROT_READ) as block:
            block.write_pieces(((0, b"abc"),))
            if blocks._self_memory.refused:
                pytest.skip("this kernel refuses forced writes to /proc/self/mem "
                            "(proc_mem.force_override): the mprotect path is used")
            assert bytes(block.view[:3]) == b"abc"

    def test_write_pieces_past_the_end_raises_and_writes_nothing(self):
        with osapi.PrivateBlock(4096, osapi.PROT_READ) as block:
            with pytest.raises(ValueError, match="overrun"):
                block.write_pieces(((0, b"first"), (4090, b"too long")))
            with pytest.raises(ValueError, match="overrun"):
                block.write_pieces(((-1, b"x"),))
            assert block.is_zero()

    def test_a_forked_child_holds_no_descriptor_of_the_parents_memory(self):
        # Even unused, an inherited /proc/<parent>/mem descriptor would let the
        # child write the parent's read-only pages after dropping privileges.
        with osapi.PrivateBlock(4096, osapi.PROT_READ) as block:
            block.write_pieces(((0, b"parent"),))  # opens the descriptor here
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                try:
                    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                            if os.path.exists(f"/proc/self/fd/{fd}")]
                    os._exit(1 if f"/proc/{parent}/mem" in held else 0)
                finally:
                    os._exit(2)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0

    def test_a_child_that_reused_the_descriptor_number_keeps_its_file(self):
        with osapi.PrivateBlock(4096, osapi.PROT_READ) as block:
            block.write_pieces(((0, b"parent"),))
            pid = os.fork()
            if pid == 0:
                try:
                    os.closerange(3, 1 << 16)  # as a daemonising child does
                    a, b = socket.socketpair()
                    block.write_pieces(((0, b"child!"),))
                    a.send(b"still a socket")
                    os._exit(0 if b.recv(64) == b"still a socket" else 1)
                except BaseException:
                    os._exit(3)
                finally:
                    os._exit(2)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0

    @pytest.mark.parametrize("forced", [True, False], ids=["proc-self-mem", "mprotect"])
    def test_pieces_are_measured_and_written_in_bytes(self, forced):
        import array

        with osapi.PrivateBlock(4096, osapi.PROT_READ) as block:
            words = array.array("I", [0x01020304, 0x05060708])
            block.write_pieces(iter([(8, words), (0, b"ab")]), forced=forced)  # any iterable
            assert bytes(block.view[:2]) == b"ab"
            assert bytes(block.view[8:16]) == words.tobytes()
            with pytest.raises(ValueError, match="contiguous"):
                block.write_pieces(((0, memoryview(b"abcdef")[::2]),), forced=forced)
            with pytest.raises(ValueError, match="overrun"):
                block.write_pieces(((4090, array.array("I", [1, 2])),), forced=forced)

    def test_a_forked_child_writes_its_own_copy_never_the_parents(self):
        # The parent writes first, so the child inherits an open /proc/self/mem
        # that names the parent's memory; the child must not use it.
        with osapi.PrivateBlock(4096, osapi.PROT_READ) as block:
            block.write_pieces(((0, b"parent"),))
            pid = os.fork()
            if pid == 0:
                try:
                    block.write_pieces(((0, b"child!"),))
                    os._exit(0 if bytes(block.view[:6]) == b"child!" else 1)
                finally:
                    os._exit(2)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert bytes(block.view[:6]) == b"parent"

    def test_a_retired_block_keeps_its_addresses_from_every_later_mapping(self):
        """A late write by a service into a retired block (through
        /proc/<pid>/mem, as the service writes) lands in no later block."""
        size = 8 * osapi.PAGE_SIZE
        retired = osapi.PrivateBlock(size)
        retired.view[:5] = b"stale"
        address = retired.address
        retired.retire()
        retired.retire()  # idempotent
        with pytest.raises(ClosedResourceError):
            retired.write_pieces(((0, b"x"),))
        kept = osapi.mappings_covering(osapi.read_maps(os.getpid()), address, size)
        assert len(kept) == 1 and kept[0].contains(address, size)  # still mapped
        later = [osapi.PrivateBlock(size) for _ in range(8)]
        try:
            for block in later:
                assert not (block.address < address + size and address < block.address + size)
                block.view[:] = b"\0" * size
            fd = os.open(f"/proc/{os.getpid()}/mem", os.O_RDWR)
            try:
                os.pwrite(fd, b"late result", address)  # what a late service write does
            finally:
                os.close(fd)
            assert all(bytes(block.view) == b"\0" * size for block in later)
        finally:
            for block in later:
                block.close()

    def test_a_view_held_across_retire_reads_zeros_instead_of_faulting(self):
        """A result being decoded, or a loan's buffer, while another thread
        tears the session down: the process must not crash. Run in a child,
        so a fault would show as its death by SIGSEGV."""
        code = (
            "from aether import osapi\n"
            "block = osapi.PrivateBlock(4 * osapi.PAGE_SIZE)\n"
            "block.view[:6] = b'result'\n"
            "held = block.view[:6]  # a slice, as read_return hands out\n"
            "block.retire()\n"
            "assert bytes(held) == bytes(6), bytes(held)\n"
            "held[:2] = b'ok'  # a loan's buffer written after the teardown\n"
            "print('alive')\n")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and result.stdout == "alive\n", result


class TestPeer:
    def test_peer_credentials_and_pidfd_name_the_connecting_process(self, tmp_path):
        path = str(tmp_path / "s")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        srv.bind(path)
        srv.listen(1)
        child = subprocess.Popen(
            [sys.executable, "-c",
             "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET);"
             f"s.connect({path!r}); sys.stdin.read()"],
            stdin=subprocess.PIPE,
        )
        try:
            conn, _ = srv.accept()
            creds = osapi.peer_credentials(conn)
            assert creds.pid == child.pid
            assert creds.uid == os.geteuid()
            pidfd = osapi.peer_pidfd(conn)
            try:
                assert not osapi.pidfd_exited(pidfd)
                with open(f"/proc/self/fdinfo/{pidfd}") as fh:
                    assert f"Pid:\t{child.pid}" in fh.read()
                assert child.stdin is not None
                child.stdin.close()
                assert osapi.wait_pidfd(pidfd, 10.0)
            finally:
                os.close(pidfd)
            conn.close()
        finally:
            child.kill()
            child.wait()
            srv.close()

    def test_pidfd_survives_exit_and_never_names_another_process(self):
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
        fd = osapi.pidfd_open(child.pid)
        try:
            osapi.pidfd_send_signal(fd, signal.SIGKILL)
            assert osapi.wait_pidfd(fd, 10.0)
            child.wait()
            with pytest.raises(OSAPIError) as info:
                osapi.pidfd_send_signal(fd, signal.SIGTERM)
            assert info.value.errno == errno.ESRCH
        finally:
            os.close(fd)


class TestProcessMemory:
    def test_reads_and_writes_only_registered_regions(self):
        with osapi.PrivateBlock(8192, osapi.PROT_READ) as block, \
                osapi.ProcessMemory(os.getpid()) as mem:
            mem.register(osapi.Region(block.address, 4096))
            mem.write(block.address, b"zz")  # FOLL_FORCE: even a read-only private page
            assert bytes(block.view[:2]) == b"zz"
            assert mem.read(block.address, 2) == b"zz"
            for addr, n in ((block.address + 4096, 1), (block.address + 4000, 200),
                            (block.address - 1, 2)):
                with pytest.raises(OSAPIError) as info:
                    mem.read(addr, n)
                assert info.value.errno == errno.EFAULT
            with pytest.raises(ValueError):
                mem.register(osapi.Region(block.address + 100, 10))  # overlaps

    def test_short_transfer_is_an_error(self):
        with osapi.PrivateBlock(8192) as block, osapi.ProcessMemory(os.getpid()) as mem:
            mem.register(osapi.Region(block.address, 8192))
            # unmap the second page behind the accessor's back
            from aether.osapi._libc import libc

            assert libc.munmap(block.address + 4096, 4096) == 0
            with pytest.raises((PartialTransferError, OSAPIError)):
                mem.read(block.address + 4000, 200)
            with pytest.raises((PartialTransferError, OSAPIError)):
                mem.write(block.address + 4000, bytes(200))
            block.size = 4096  # so close() unmaps only what is left

    def test_descriptor_reaches_nothing_after_exec(self, tmp_path):
        """Threat T6: the fd is bound to the address space, not the pid."""
        r, w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.close(go_w)
            block = osapi.PrivateBlock(4096)
            block.view[:5] = b"hello"
            os.write(w, block.address.to_bytes(8, "little"))
            os.read(go_r, 1)  # wait until the parent opened our memory
            os.execv(sys.executable, [sys.executable, "-c", "import signal; signal.pause()"])
        os.close(w)
        os.close(go_r)
        address = int.from_bytes(os.read(r, 8), "little")
        try:
            with osapi.ProcessMemory(pid) as mem:
                mem.register(osapi.Region(address, 4096))
                assert mem.read(address, 5) == b"hello"
                os.write(go_w, b"x")
                # wait until the exec happened (comm changes)
                pidfd = osapi.pidfd_open(pid)
                try:
                    for _ in range(1000):
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            if b"signal.pause" in fh.read():
                                break
                        osapi.wait_pidfd(pidfd, 0.01)
                finally:
                    os.close(pidfd)
                with pytest.raises(OSAPIError):
                    mem.read(address, 5)
                with pytest.raises(OSAPIError):
                    mem.write(address, b"XXXXX")
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


class TestMaps:
    def test_parse_maps_lines(self):
        text = (
            "7f0000000000-7f0000001000 r--p 00000000 00:00 0 \n"
            "7f0000001000-7f0000002000 r-xp 00001000 08:01 1234 /usr/lib/libc.so.6\n"
            "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                  [stack]\n"
        )
        a, b, c = osapi.parse_maps(text)
        assert a.anonymous and a.private and not a.executable
        assert b.executable and not b.anonymous and b.path == "/usr/lib/libc.so.6"
        assert not c.anonymous and c.path == "[stack]"
        with pytest.raises(ValueError):
            osapi.parse_maps("garbage\n")


class TestDirectories:
    def test_private_directory_created_and_checked(self, tmp_path):
        d = osapi.ensure_private_directory(tmp_path / "rt")
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        osapi.ensure_private_directory(d)  # idempotent

    def test_symlink_and_open_modes_refused(self, tmp_path):
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        link = tmp_path / "link"
        link.symlink_to(real)
        with pytest.raises(OSAPIError) as info:
            osapi.check_directory(link, owner=os.geteuid())
        assert info.value.errno == errno.ELOOP
        os.chmod(real, 0o777)
        with pytest.raises(OSAPIError):
            osapi.check_directory(real, owner=os.geteuid(), max_mode=0o755)
        with pytest.raises(OSAPIError):
            osapi.check_directory(real, owner=os.geteuid() + 1, max_mode=0o777)


def test_ptracer_requires_yama_or_sets_and_clears():
    scope = osapi.yama_ptrace_scope()
    if scope is None:
        with pytest.raises(OSAPIError) as info:
            osapi.set_ptracer(os.getppid())
        assert info.value.errno == errno.EINVAL
    else:
        osapi.set_ptracer(os.getppid())
        osapi.clear_ptracer()


def test_dumpable_round_trip():
    assert osapi.is_dumpable()
    pid = os.fork()
    if pid == 0:
        osapi.set_dumpable(False)
        os._exit(0 if not osapi.is_dumpable() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

