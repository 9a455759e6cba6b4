"""Tests of behaviour only lsr.tensorflow has (collected when the session selects tensorflow)."""
