"""Aether Guard: the service object (handlers land in the following commits)."""

from __future__ import annotations

import aether

from . import schema

service = aether.Service("guard", schema=schema)
