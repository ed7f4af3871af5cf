"""``python -m segmentation``: the segmentation command (segmentation.cli)."""

from .cli import main

main()
