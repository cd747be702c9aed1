"""Test doubles for external services used by citeqa tests."""
