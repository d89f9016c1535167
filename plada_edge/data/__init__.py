"""Benchmark data builders (offline-mix and its targets): see plada_edge.data.offline."""
