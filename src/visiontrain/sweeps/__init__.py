"""Sweeps from the command line: failed trials recorded, not fatal; a summary table of every trial."""
