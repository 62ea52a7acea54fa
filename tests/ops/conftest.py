"""Fixtures for the ops tests; the helpers live in ops_app.py (a unique module name, so the test
folders' helpers never shadow each other when the whole suite runs in one session)."""

from ops_app import ops

__all__ = ["ops"]
