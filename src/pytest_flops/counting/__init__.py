"""Counting: the dispatch mode, its formula table, module rows, and counting on stand-ins.

It imports torch and never pytest. Every module here is private: the public
names are those of :mod:`pytest_flops`'s ``__all__``.
"""
