"""Training: :func:`train` a model on a ``build-dataset`` folder and save one ``.keras`` file.

Importing this package is cheap (no Keras). Modules, by job:

* :mod:`.options`     :class:`TrainOptions`, every knob of ``cxrtool train``, and its checks
* :mod:`.loop`        :func:`train`: validate, load data, build or resume, fit, save
* :mod:`.callbacks`   the end-of-epoch logic: best epoch, early stop, LR on plateau, checkpoints
* :mod:`.checkpoints` the run's files and the resumable run folder (``NAME.run/``)
* :mod:`.curves`      the CSV log and the loss/accuracy curves PNG
* :mod:`.distribute`  devices, data parallelism and multi-host setup
"""

from __future__ import annotations

from .curves import plot_curves
from .loop import TrainResult, train
from .options import TrainOptions

__all__ = ["TrainOptions", "TrainResult", "plot_curves", "train"]
