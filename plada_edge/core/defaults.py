"""The measured defaults: one place, read by the library, the CLI and tasks.toml alike.

Each value was chosen from runs of tools/bench_plada.py, and docs/results.md ("Defaults, and why")
prints these values beside the numbers behind them, so the page shows whether they still agree.
  - selection (paper §3.2): lowest energy with the Safety-Net, alpha -0.2, share 0.5. Plain
    lowest energy drops whole classes at small keeps.
  - spread: diversity within the low-energy band (ours, not the paper's). "auto" draws each
    quota from its 8x-larger band of lowest energies at small keeps (8x measured best at 1 %),
    and shrinks to the strict order as the band would pass 8 % of the pool (spread 8 lost to
    the strict order at 5 and 10 %).
  - student epochs (paper §4: 30 on an ImageNet-1K-sized pool).
"""

SELECTION = {"strategy": "energy", "safety_net": True, "alpha": -0.2, "share": 0.5, "spread": "auto"}
STUDENT_EPOCHS = 30
