"""The ``citeqa`` command line: the entry point above the packages it drives."""
