"""Snapshots: the file format, where the files live, and which of them are stale.

Every module here is private: the public names are those of
:mod:`pytest_flops`'s ``__all__``.
"""
