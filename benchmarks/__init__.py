"""plada-edge's benchmarks: the measurements behind docs/results.md and docs/benchmarks.md.

    python -m benchmarks                       # the list
    python -m benchmarks suite --report-only --update-docs
    python -m benchmarks kernel --update-docs

Each module here is one benchmark with a ``main()``; ``kit`` is the plumbing they share (the timing loop,
the machine's name, the committed run records, the docs writer). Every section a benchmark writes into
docs/ names the command that wrote it. Run from the repository root.
"""
