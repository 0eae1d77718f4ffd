"""Plugins that fail on purpose: one at import, one while registering its provider."""
