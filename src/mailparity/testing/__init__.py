"""Test doubles and fixtures for host applications: provider fakes, a pytest plugin."""
