"""The unified taxonomy: TSV tables, their validation and editing, and the label-space converters.

The converters need torch and OpenCV; they are imported on first use so that the taxonomy command
line starts quickly.
"""

from unifiedseg.taxonomy.table import TaxonomyError, TaxonomyTable
from unifiedseg.taxonomy.validate import Problem, validate

_CONVERTERS = ("NaiveTaxonomyConverter", "OracleTaxonomyConverter", "TaxonomyConverter", "build_converter")

__all__ = ["Problem", "TaxonomyError", "TaxonomyTable", "validate", *_CONVERTERS]


def __getattr__(name):
    if name in _CONVERTERS:
        from unifiedseg.taxonomy import converter

        return getattr(converter, name)
    raise AttributeError(f"module 'unifiedseg.taxonomy' has no attribute {name!r}")
