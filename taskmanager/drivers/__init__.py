"""Compute drivers: where instance containers run."""
