"""What the tests build and run, from the targets table (``runtimes.targets``)."""

from __future__ import annotations

from converters.all import matrix_cells
from model.config import VARIANTS
from model.forms import EXPORT_FORMS
from runtimes.targets import CONVERTED, PRECISIONS, TARGETS

# The whole matrix Linux can run: every converted target, every variant, every precision a
# target supports, frame and stream forms (44 artifacts; ~12 min on two cores with `-n 2`),
# target by target as ``converters.all`` reports them.
CI_MATRIX = [
    (c.target, c.variant, c.precision, c.form)
    for c in matrix_cells(list(VARIANTS), list(CONVERTED), list(PRECISIONS), list(EXPORT_FORMS))
]
CI_MATRIX_IDS = ["-".join(key) for key in CI_MATRIX]

# (target, runtime) of each converted target, run the way every host can: its reference where
# it has one (Core ML's MIL evaluator: Apple's runtime predicts only on macOS), else its default.
PORTABLE_RUNTIMES = [
    (name, spec.reference or spec.runtime) for name, spec in TARGETS.items() if spec.converts
]
