"""Shared pytest fixtures."""

import pytest

from taxonomy_fixtures import write_tiny_taxonomy


@pytest.fixture
def tiny_tsv(tmp_path):
    """Path to the hand-written tiny taxonomy (see tests/taxonomy_fixtures.py)."""
    return write_tiny_taxonomy(tmp_path)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small copy of the demo data (6 train, 4 val images per dataset), generated once per test session."""
    from unifiedseg.data.demo import make_demo_data

    root = tmp_path_factory.mktemp("demo_data")
    make_demo_data(root, num_train=6, num_val=4, num_test=4, progress=False)
    return root


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Generated lists and decoded-annotation caches go to a session folder, not the user's ~/.cache."""
    import os

    previous = os.environ.get("UNIFIEDSEG_CACHE_DIR")
    os.environ["UNIFIEDSEG_CACHE_DIR"] = str(tmp_path_factory.mktemp("unifiedseg_cache"))
    yield
    if previous is None:
        os.environ.pop("UNIFIEDSEG_CACHE_DIR", None)
    else:
        os.environ["UNIFIEDSEG_CACHE_DIR"] = previous
