"""The program the connector execve()s into (see forking_client.py).

argv: ADDRESS GO_FD. Maps the connector's old block layout at ADDRESS again,
filled with 0x1337D00D (what a pid-addressed write would hit), reports its
hash, tells the holder to go, waits for the holder to finish (it is this
process's child, inherited across execve), then reports the hash again.
Imports only what it needs, to be up fast.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawpeer import Arena, report


def main() -> None:
    address, go_w = int(sys.argv[1], 16), int(sys.argv[2])
    try:
        arena = Arena(address=address)
    except OSError as exc:
        report(who="image", fatal=f"cannot map 0x{address:x}: {exc}")
        os._exit(1)
    report(who="image", pid=os.getpid(), hash=arena.digest(), pattern=arena.holds_pattern())
    os.write(go_w, b"go")
    os.close(go_w)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    report(who="image", hash_after=arena.digest(), pattern=arena.holds_pattern(),
           canaries=arena.canaries_intact())


main()
