"""The client side: sessions with a service and operation handles."""

from .client import Client as Client
from .discovery import (
    ServiceAddress as ServiceAddress,
    resolve as resolve,
    visible_services as visible_services,
)
from .operation import Operation as Operation
