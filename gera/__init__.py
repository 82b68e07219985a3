"""GeRA Studio: align two frozen unimodal encoders from few pairs with geometric regularisation."""

from gera.errors import GeraError

__all__ = ["GeraError"]
__version__ = "0.1.0"
