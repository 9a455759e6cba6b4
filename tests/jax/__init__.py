"""Tests of behaviour only lsr.jax has (collected when the session selects jax)."""
