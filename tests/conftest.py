"""Shared pytest fixtures."""

import pytest

from taxonomy_fixtures import write_tiny_taxonomy


@pytest.fixture
def tiny_tsv(tmp_path):
    """Path to the hand-written tiny taxonomy (see tests/taxonomy_fixtures.py)."""
    return write_tiny_taxonomy(tmp_path)
