"""mollify: mollification and Monte Carlo integration for smoothed gradients in PyTorch.

The companion library of the *mollify* textbook. Every chapter of the book imports what it uses
from here; the public names of every module are re-exported from this one.

>>> import mollify
>>> x_train, y_train, x_test, y_test = mollify.digits()
>>> x_train.shape[1:]
torch.Size([1, 8, 8])
"""

__version__ = "0.1.0"

from mollify import (
    data,
    explain,
    gradients,
    kernels,
    metrics,
    mollifier,
    montecarlo,
    nn,
    optim,
    regions,
)
from mollify.data import *  # noqa: F401,F403
from mollify.explain import *  # noqa: F401,F403
from mollify.gradients import *  # noqa: F401,F403
from mollify.kernels import *  # noqa: F401,F403
from mollify.metrics import *  # noqa: F401,F403
from mollify.mollifier import *  # noqa: F401,F403
from mollify.montecarlo import *  # noqa: F401,F403
from mollify.nn import *  # noqa: F401,F403
from mollify.optim import *  # noqa: F401,F403
from mollify.regions import *  # noqa: F401,F403

__all__ = [
    "__version__",
    *data.__all__,
    *kernels.__all__,
    *montecarlo.__all__,
    *mollifier.__all__,
    *gradients.__all__,
    *explain.__all__,
    *regions.__all__,
    *metrics.__all__,
    *nn.__all__,
    *optim.__all__,
]
