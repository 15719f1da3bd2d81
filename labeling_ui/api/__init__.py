"""The label store's JSON API (`/api/v1` on the labeling server): per-account tokens
(tokens.py), the routes (routes.py), the gate's token check and rate limit (gate.py), the
admin tab's token panel (admin_tab.py). The Python client is `labeling_ui.client`.
See docs/api.md."""
