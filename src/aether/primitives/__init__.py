"""The seed-004 IPC primitives on Linux: atom tables, file mappings,
anonymous pipes and mailslots (see ``docs/primitives.md``).

Use the submodules: :mod:`aether.primitives.atoms`,
:mod:`aether.primitives.mapping`, :mod:`aether.primitives.pipes`,
:mod:`aether.primitives.mailslots`. The Win32-style face of the same
implementation is :mod:`aether.win32`.
"""

from . import atoms as atoms, mailslots as mailslots, mapping as mapping, pipes as pipes
