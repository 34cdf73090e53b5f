"""
:mod:`ace.utils` contains small helpers used across ACE (dates, plugins, caching, signals).
"""
