"""The pytest plugin: hooks, session, markers, settings and the comparison of counts.

It imports torch only lazily, once a collected test measures. The entry point
is :mod:`pytest_flops.plugin.hooks`. Every module here is private: the public
names are those of :mod:`pytest_flops`'s ``__all__``.
"""
