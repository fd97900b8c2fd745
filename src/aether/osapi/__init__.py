"""The only layer that makes system calls or uses ctypes.

Everything here is Linux-specific. OS failures leave this package as
:class:`aether.errors.OSAPIError` (or a subclass), translated once.
"""

from .blocks import (
    CHUNK as CHUNK,
    MAP_ANONYMOUS as MAP_ANONYMOUS,
    MAP_PRIVATE as MAP_PRIVATE,
    PAGE_SIZE as PAGE_SIZE,
    PROT_EXEC as PROT_EXEC,
    PROT_NONE as PROT_NONE,
    PROT_READ as PROT_READ,
    PROT_WRITE as PROT_WRITE,
    PrivateBlock as PrivateBlock,
    round_to_pages as round_to_pages,
)
from .creds import drop_privileges as drop_privileges
from .dirs import (
    check_directory as check_directory,
    ensure_private_directory as ensure_private_directory,
)
from .eventfd import (
    Poller as Poller,
    check_sealed_memfd as check_sealed_memfd,
    eventfd_create as eventfd_create,
    eventfd_drain as eventfd_drain,
    eventfd_signal as eventfd_signal,
    is_eventfd as is_eventfd,
    wait_readable as wait_readable,
)
from .fdpass import recv_fds as recv_fds, send_fds as send_fds
from .limits import open_fd_count as open_fd_count, raise_fd_limit as raise_fd_limit
from .malloc import (
    MallocStats as MallocStats,
    limit_arenas as limit_arenas,
    malloc_stats as malloc_stats,
    pin_mmap_threshold as pin_mmap_threshold,
    trim_heap as trim_heap,
)
from .memfd import (
    F_SEAL_SEAL as F_SEAL_SEAL,
    add_seals as add_seals,
    memfd_create as memfd_create,
)
from .peer import (
    SO_PEERPIDFD as SO_PEERPIDFD,
    PeerCredentials as PeerCredentials,
    peer_credentials as peer_credentials,
    peer_pidfd as peer_pidfd,
    peer_pidfd_supported as peer_pidfd_supported,
)
from .pidfd import (
    close_fd as close_fd,
    pidfd_exited as pidfd_exited,
    pidfd_getfd as pidfd_getfd,
    pidfd_open as pidfd_open,
    pidfd_send_signal as pidfd_send_signal,
    wait_pidfd as wait_pidfd,
)
from .prctl import (
    clear_ptracer as clear_ptracer,
    is_dumpable as is_dumpable,
    set_dumpable as set_dumpable,
    set_parent_death_signal as set_parent_death_signal,
    set_ptracer as set_ptracer,
    yama_ptrace_scope as yama_ptrace_scope,
)
from .procmaps import (
    MemoryMapping as MemoryMapping,
    mappings_covering as mappings_covering,
    parse_maps as parse_maps,
    read_maps as read_maps,
)
from .procmem import ProcessMemory as ProcessMemory, Region as Region
from .sched import (
    allowed_cpus as allowed_cpus,
    clock_ticks_per_second as clock_ticks_per_second,
    cpu_busy_ticks as cpu_busy_ticks,
    current_cpu as current_cpu,
    main_thread_cpus as main_thread_cpus,
    one_cpu_with as one_cpu_with,
    online_cpus as online_cpus,
    process_cpu_seconds as process_cpu_seconds,
    runnable_tasks as runnable_tasks,
    set_process_cpus as set_process_cpus,
    set_thread_cpus as set_thread_cpus,
)
from .sharedmap import SharedView as SharedView
