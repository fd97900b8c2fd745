"""``aether.status`` counts the operations of every transport (found by
``aether bench load``, which checks the count against its own: the socket
transport's operations were not counted)."""

from __future__ import annotations

import aether_testsvc as ts
import pytest

import aether


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_operations_served_counts_each_finished_operation(testsvc, transport):
    with aether.Client(testsvc.socket_path, schema=ts, transport=transport) as client:
        assert client.transport == transport
        before = client.status().operations_served
        for i in range(7):
            assert client.echo(b"%d" % i) == b"%d" % i
        with pytest.raises(aether.OperationError):
            client.call(ts.Fail())
        # the status call before counts too; this one is counted after it answers
        assert client.status().operations_served == before + 1 + 7 + 1
