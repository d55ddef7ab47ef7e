"""Setup for the NQS tests: nothing global (use the `x64` fixture from tests/conftest.py per test)."""
