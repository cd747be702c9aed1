"""Benchmark harness: `python -m bench` measures ingest, retrieval, the HTTP service, startup and
memory, and llama-index's default pipeline side by side, then rewrites BENCHMARKS.md.

Modules, one per phase: :mod:`bench.ingest_bench` (ingest vs raw embedding throughput),
:mod:`bench.synthetic` (10k/100k-chunk stores built from real sentence embeddings),
:mod:`bench.retrieval_bench`, :mod:`bench.service_bench` (HTTP, startup, RSS),
:mod:`bench.baseline` (llama-index defaults), :mod:`bench.profiling` and :mod:`bench.report`.
"""
