"""The service host: sessions, dispatch, authorization, limits."""

from .context import (
    Cancelled as Cancelled,
    OperationContext as OperationContext,
    OperationFailed as OperationFailed,
)
from .host import Service as Service, load_service as load_service
from .listener import default_socket_path as default_socket_path
from .policy import Caller as Caller, Limits as Limits, Policy as Policy
