"""Evaluation datasets and tooling for citeqa."""
