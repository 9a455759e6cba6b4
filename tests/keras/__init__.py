"""Tests of behaviour only lsr.keras has (collected when the session selects tensorflow)."""
