"""Aether: control a privileged background service over fast, safe local IPC."""

__version__ = "0.1.0"
