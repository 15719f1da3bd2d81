import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from labeling_ui.pg_server import ThrowawayPostgres, pg_bin  # noqa: E402
from tiny_models import make_tiny_model_dir  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random llama-style causal LM folder with a chat template (like SmolLM2)."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A tiny random GPT-2 folder: no chat template, EOS == <|endoftext|>, no pad token."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="module")
def pg_instance():
    """A real PostgreSQL server on loopback for one test module (Debian's postgresql, as an
    unprivileged user when run as root, removed afterwards), to stop and restart (ThrowawayPostgres);
    skipped, with the reason, without it."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 not installed (pip install -e '.[postgres]')")
    with ThrowawayPostgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def pg_server(pg_instance):
    """The URL of pg_instance's server."""
    return pg_instance.url


@pytest.fixture
def pg(pg_instance):
    """pg_instance running, with an empty database; running again afterwards whatever the test did
    (outage tests stop and restart it)."""
    from pg_helpers import empty_database

    pg_instance.start()
    empty_database(pg_instance.url)
    yield pg_instance
    pg_instance.start()
