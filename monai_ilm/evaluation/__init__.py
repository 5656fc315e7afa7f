"""Placeholder: filled by its own module files."""
