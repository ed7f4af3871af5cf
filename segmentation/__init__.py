"""The segmentation application: recordings and archived studies in, what BaS found out.

One way to open any input (:mod:`segmentation.sources`: video, frames, dataset, DICOM file
or study folder, DICOMweb study, series or search), one interface for what a loop leaves
behind (:mod:`segmentation.outputs`: masks, overlay video, CSV and plots, DICOM
Segmentation, DICOM measurement report), and the run between them
(:mod:`segmentation.run`); the command is :mod:`segmentation.cli`. It stands on
``runtimes`` (any converted artifact, one Session) and below ``device_bench``.
"""
