"""Prompt templates (Jinja2, one per file), installed as the package data ``citeqa.prompts``.

This file makes the folder importable, which is how importlib.resources finds the templates in an
editable install as in a wheel. Edit the templates here, or point ``CITEQA_PROMPTS_DIR`` at a
folder of your own (see README).
"""
