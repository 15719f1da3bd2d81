"""The run report: one self-contained HTML page (plus PNGs) of what happened in a run."""
