"""rankfusion: measure and counter representation collapse in multi-modal models.

The numeric core (:mod:`rankfusion.spectral`, :mod:`rankfusion.theorem`) depends on
NumPy/SciPy only; torch is used when torch tensors are passed in.
"""

__version__ = "0.1.0"
