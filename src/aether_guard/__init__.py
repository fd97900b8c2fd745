"""Aether Guard: the reference security service."""
