"""Perception: person / object boxes, poses and body parts per keyframe.

``boxes`` (ground truth, proposals, box utilities) and ``parts`` need only
numpy and pandas; ``detect`` and ``pose`` wrap mmdet and mmpose, which they
import when a model is loaded or run.
"""
