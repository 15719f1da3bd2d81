"""The labeling stage: sample K answers per prompt, let reviewers rank them in a web app, and
export the rankings (and pairwise preferences) for the reward model.

    python -m labeling_ui generate --policy runs/exp1/sft --k 4 --run exp1
    python -m labeling_ui add-reviewer alice --admin
    python -m labeling_ui serve --run exp1
    python -m labeling_ui export --run exp1

`labeling_ui.store.LabelStore` is the API everything else (simulated reviewers too) writes through.
"""
