"""Plugins for the contract checks: one written for contract 2, one that declares no contract range."""
