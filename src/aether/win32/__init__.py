"""The seed-004 primitives with Win32's names and conventions.

Code written against the Win32 calls the seed names ports line by line:
handles are integers, failures return what Win32 returns (0, FALSE,
``INVALID_HANDLE_VALUE``) and set the calling thread's last error, read with
:func:`GetLastError`. The Pythonic API is :mod:`aether.primitives`; both are
one implementation.
"""

from aether.errors import Win32Error

from ._handles import (
    INVALID_HANDLE_VALUE as INVALID_HANDLE_VALUE,
    NULL as NULL,
    CloseHandle as CloseHandle,
    GetLastError as GetLastError,
    SetLastError as SetLastError,
)
from .atoms import *  # noqa: F403
from .atoms import __all__ as _atoms_all
from .mailslots import *  # noqa: F403
from .mailslots import __all__ as _mailslots_all
from .mapping import *  # noqa: F403
from .mapping import __all__ as _mapping_all
from .pipes import *  # noqa: F403
from .pipes import __all__ as _pipes_all

# ERROR_* numbers as module constants, as winerror.h has them.
globals().update({e.name: int(e) for e in Win32Error})

__all__ = sorted(
    {
        "INVALID_HANDLE_VALUE", "NULL", "CloseHandle", "GetLastError", "SetLastError",
        *_atoms_all, *_mailslots_all, *_mapping_all, *_pipes_all,
        *(e.name for e in Win32Error),
    }
)
