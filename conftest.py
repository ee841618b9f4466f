"""Repository-level pytest configuration."""

pytest_plugins = ["pytester"]
