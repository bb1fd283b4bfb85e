"""Regression models of the cooling plant, safe setpoint proposals and M&V."""
