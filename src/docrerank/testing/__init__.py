"""Test and benchmark helpers that ship with the package (fakes are named as such)."""
