"""``aether gui``: the Qt (PySide6) control panel for any Aether service.

It talks to services only through :class:`aether.client.Client` (never the
service or transport internals) and never blocks the GUI thread on IPC:
see :mod:`aether.gui.tasks`. Start it with :func:`aether.gui.app.main`.
"""
