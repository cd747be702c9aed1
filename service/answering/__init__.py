"""Answering: question -> evidence -> answer (retrieval, evidence, refusal, generators)."""
