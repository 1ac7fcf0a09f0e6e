"""Frozen, typed descriptions of hardware, models and deployments (SI units inside)."""
