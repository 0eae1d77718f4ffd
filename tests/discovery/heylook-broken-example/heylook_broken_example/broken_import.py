"""Fails at import, like a plugin whose engine library is missing."""

import heylook_engine_that_is_not_installed  # noqa: F401
