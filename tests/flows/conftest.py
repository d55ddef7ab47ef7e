"""Tests of sciml.flows run in float64 and float32: the battery switches x64 per test where needed."""
