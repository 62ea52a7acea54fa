"""Fixtures for the security tests; the helpers live in sec_support.py (a unique module name)."""

from sec_support import make_trap, sec_api, sec_redis_url, trap

__all__ = ["make_trap", "sec_api", "sec_redis_url", "trap"]
