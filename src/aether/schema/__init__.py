"""Operation schemas: declaring operations, the registry, the codec."""

from .builtins import Describe as Describe, Echo as Echo, Status as Status
from .codec import (
    TypedDecoder as TypedDecoder,
    encode as encode,
    encode_into as encode_into,
    encode_into_at as encode_into_at,
)
from .params import (
    OperationSpec as OperationSpec,
    Params as Params,
    operation as operation,
    spec_of as spec_of,
)
from .payloads import ErrorInfo as ErrorInfo, ProgressInfo as ProgressInfo
from .registry import Registry as Registry
