"""Scope 2 emissions (location- and market-based) and avoided emissions."""
