"""The study registry: name → :class:`~deepscope.studies.base.Study`.

A plain dict, in the order of the original homework (STUDIES.md), so ``deepscope run all``
runs Part 1 first and tests can parametrise over ``STUDIES``.
"""

from __future__ import annotations

from .base import SCALE_NAMES, Study, make_config, suggest
from .error_surface import study as _error_surface
from .fit_function import study as _fit_function
from .fit_mnist import study as _fit_mnist
from .grad_norm import study as _grad_norm
from .interpolation import study as _interpolation
from .min_ratio import study as _min_ratio
from .params_vs_generalization import study as _params_vs_generalization
from .pca_trajectory import study as _pca_trajectory
from .random_labels import study as _random_labels
from .sensitivity import study as _sensitivity
from .sharpness import study as _sharpness

STUDIES: dict[str, Study] = {
    s.name: s
    for s in (_fit_function, _fit_mnist, _pca_trajectory, _grad_norm, _min_ratio,
              _error_surface, _random_labels, _params_vs_generalization, _interpolation,
              _sensitivity, _sharpness)
}

__all__ = ["SCALE_NAMES", "STUDIES", "Study", "make_config", "suggest"]
