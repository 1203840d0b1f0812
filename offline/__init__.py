"""Offline machine learning: training, export and evaluation of the detectors.

Run by ``scripts/train.py``, ``scripts/evaluate.py``, ``scripts/evaluate_suite.py`` and
``scripts/independence.py`` (TensorFlow, scikit-learn, matplotlib). The web tier never imports
this package (tests/test_layout.py): it reads what training wrote, the manifest
(`webapp.detection.manifest`) and the exported models, through `webapp.inference`.
"""
