"""The bundled corpus, installed as the package data ``citeqa.data`` (see README).

This file makes the folder importable, which is how importlib.resources finds the corpus in an
editable install as in a wheel.
"""
