"""``python -m runtimes.segment``: kept for the scripts that call it; the command lives in
the segmentation application (``python -m segmentation``, :mod:`segmentation.cli`).

The one module of ``runtimes`` that names the floor above it: an entry point, nothing
else (tests/test_import_order.py holds it to that).
"""

from segmentation.cli import main

if __name__ == "__main__":
    main()
