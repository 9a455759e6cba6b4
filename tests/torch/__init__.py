"""Tests of behaviour only lsr.torch has (collected when the session selects torch)."""
