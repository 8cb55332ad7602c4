"""The unified taxonomy: TSV tables, their validation and editing, and the label-space converters."""

from unifiedseg.taxonomy.converter import (
    NaiveTaxonomyConverter,
    OracleTaxonomyConverter,
    TaxonomyConverter,
    build_converter,
)
from unifiedseg.taxonomy.table import TaxonomyError, TaxonomyTable
from unifiedseg.taxonomy.validate import Problem, validate

__all__ = [
    "NaiveTaxonomyConverter",
    "OracleTaxonomyConverter",
    "Problem",
    "TaxonomyConverter",
    "TaxonomyError",
    "TaxonomyTable",
    "build_converter",
    "validate",
]
