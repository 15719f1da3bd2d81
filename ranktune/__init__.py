"""What the pipeline's stages share: model loading, run folders, input checks, configs, plots.

The stages (`sft`, `reward`, `rlhf`, `labeling_ui`) talk to each other only through artifacts
on disk; this package holds the conventions those artifacts follow.
"""

__version__ = "0.1.0"
