"""Evaluation of the panel on labelled series: `replay` (one series), `cache` (trained models
kept between runs), `curves` (each detector's threshold sweep), `independence` (how
independently the detectors err) and `suite` (everything, and the tables of docs/detection.md).
"""
