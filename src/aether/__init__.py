"""Aether: control a privileged background service over fast, safe local IPC.

The public surface::

    import aether

    @aether.operation(code=0x0101, name="demo.greet", result=str)
    class Greet(aether.Params):
        who: str

    service = aether.Service("demo", schema=my_schema_module)
    client = aether.Client("demo", schema=my_schema_module)
"""

from ._version import __version__ as __version__
from .client import Client as Client, Operation as Operation
from .errors import (
    AetherError as AetherError,
    AetherTimeoutError as AetherTimeoutError,
    AuthorizationError as AuthorizationError,
    ConnectError as ConnectError,
    HandshakeError as HandshakeError,
    OperationError as OperationError,
    OutcomeUnknownError as OutcomeUnknownError,
    ProtocolError as ProtocolError,
    SchemaError as SchemaError,
    ServiceRestartedError as ServiceRestartedError,
)
from .schema import Params as Params, Registry as Registry, operation as operation
from .service import (
    Cancelled as Cancelled,
    Limits as Limits,
    OperationContext as OperationContext,
    OperationFailed as OperationFailed,
    Policy as Policy,
    Service as Service,
)
