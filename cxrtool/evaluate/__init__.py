"""Evaluation: the library behind ``cxrtool evaluate`` (the paper's Table III, Fig. 6 and Fig. 7,
plus what the paper did not measure).

For each model, on one split of a dataset (or on any folder of class sub-folders):

* per-class precision, recall, F1 and support; accuracy; macro and weighted averages; one-
  vs-rest ROC AUC per class and macro; log-loss; the confusion matrix -- all scikit-learn;
* 95% bootstrap confidence intervals for accuracy and macro F1, resampling whole *groups*
  (the manifest's duplicate/patient groups) so near-copies do not shrink the interval;
* calibration: top-label expected calibration error and a reliability diagram; for a model
  with a temperature (:mod:`.calibration`), ECE and log-loss before and after it;
* a per-source breakdown (accuracy, per-class recall, what was predicted) because a high
  overall score can hide a model that learned where an image came from.

Images that cannot be read are counted, listed and excluded, never silently.

Modules: :mod:`.evalset` (which images, loaded once), :mod:`.metrics` (the numbers),
:mod:`.run` (:func:`evaluate`: the orchestration), :mod:`.outputs` (metrics.json, report.md,
predictions.csv), :mod:`.figures` (the PNGs), :mod:`.calibration` (temperature scaling:
fit, the model with it, :func:`calibrate_model` for an existing model). Importing the package is cheap: Keras,
scikit-learn and matplotlib are imported inside the functions that use them.
"""

from __future__ import annotations

from .calibration import calibrate_model
from .evalset import EvalSet, open_eval_set
from .metrics import compute_metrics
from .run import evaluate

__all__ = ["EvalSet", "calibrate_model", "compute_metrics", "evaluate", "open_eval_set"]
