"""Victim: holds 0x1337D00D blocks at a fixed address and reports their hash.

argv: ADDRESS (hex). Prints {"pid", "param", "retn", "size", "hash"}; then
answers each "hash" line on stdin with {"hash"}; exits at EOF.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawpeer import Arena, die_after, report


def main() -> None:
    die_after(60)
    try:
        arena = Arena(address=int(sys.argv[1], 16))
    except OSError as exc:
        report(fatal=f"victim cannot map its blocks: {exc}")
        return
    report(pid=os.getpid(), param=arena.param, retn=arena.retn, size=arena.param_size,
           hash=arena.digest())
    for line in sys.stdin:
        if line.strip() == "hash":
            report(hash=arena.digest(), pattern=arena.holds_pattern())


main()
