"""Probes: measurements of any ``nn.Module`` on any data, each a function of flat θ.

See DESIGN.md ("Everything is a function of θ"). Lower-level pieces that work on any matvec
(Lanczos, Hutchinson, SLQ) live in :mod:`deepscope.probes.linalg`.
"""

from .batches import Batches, ModelLoss, batch_size, model_loss
from .critical import CriticalPoints, find_critical_point, gradient_flat_share
from .gradient import full_gradient, grad_norm
from .hessian import (
    MinimalRatio,
    Spread,
    ensemble_hessians,
    hessian,
    hessian_eigenvalues,
    hessian_trace,
    hvp,
    minimal_ratio,
    per_block,
    ratio_from_eigenvalues,
    spectral_density,
)
from .landscape import (
    Interpolation,
    filter_normalized_direction,
    interpolate,
    pca_plane,
    random_plane,
    surface,
)
from .sensitivity import input_jacobian, sensitivity
from .sharpness import Sharpness, sharpness
from .trajectory import PCAResult, pca

__all__ = [
    "Batches", "CriticalPoints", "Interpolation", "MinimalRatio", "ModelLoss", "PCAResult",
    "Sharpness", "Spread", "batch_size", "ensemble_hessians", "filter_normalized_direction",
    "find_critical_point", "full_gradient", "grad_norm", "gradient_flat_share", "hessian",
    "hessian_eigenvalues", "hessian_trace", "hvp", "input_jacobian", "interpolate",
    "minimal_ratio", "model_loss", "pca", "pca_plane", "per_block", "random_plane",
    "ratio_from_eigenvalues", "sensitivity", "sharpness", "spectral_density", "surface",
]
