"""``python -m runtimes.node``: the DICOM node, a forwarder as ``runtimes.segment`` is; it
lives in the segmentation application (``python -m segmentation.node``)."""

from segmentation.node import main

if __name__ == "__main__":
    main()
