"""PostgreSQL for the store tests: an empty database per test (the server: conftest.py's pg_server,
labeling_ui/pg_server.py), and benchmarks/label_load.py's load runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def label_load():
    """benchmarks/label_load.py as a module: its load runs."""
    spec = importlib.util.spec_from_file_location("label_load", REPO / "benchmarks" / "label_load.py")
    module = sys.modules.setdefault("label_load", importlib.util.module_from_spec(spec))
    if not hasattr(module, "load_run"):
        spec.loader.exec_module(module)
    return module


def empty_database(server_url: str) -> str:
    """The PostgreSQL server's database, emptied for the next test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return server_url
