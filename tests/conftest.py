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
