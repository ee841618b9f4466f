"""Reports: the records of a run, and the terminal, Markdown, JSON and HTML reports made from them.

Reports are pure functions of the records. Every module here is private: the
public names are those of :mod:`pytest_flops`'s ``__all__``.
"""
