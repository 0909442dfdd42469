"""cxrtool: chest X-ray classification (COVID-19, pneumonia, normal) from dataset to Grad-CAM.

Importing the package is cheap: nothing here touches Keras or JAX. Modules that need them
import them lazily through :mod:`cxrtool.backend`.
"""

__version__ = "0.1.0"

#: The shared label space; every source adapter maps into it, every model predicts it.
CLASSES: tuple[str, ...] = ("covid", "pneumonia", "normal")

__all__ = ["CLASSES", "__version__"]
