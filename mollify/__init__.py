"""mollify: mollification and Monte Carlo integration for smoothed gradients in PyTorch.

The companion library of the *mollify* textbook. Every chapter of the book imports what it uses
from here; the public API is re-exported from this module.

>>> import mollify
>>> x_train, y_train, x_test, y_test = mollify.digits()
>>> x_train.shape[1:]
torch.Size([1, 8, 8])
"""

from mollify.data import (
    cache_dir,
    digits,
    small_cnn,
    small_mlp,
    trained_digits_cnn,
)
from mollify.regions import activation_pattern

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "activation_pattern",
    "cache_dir",
    "digits",
    "small_cnn",
    "small_mlp",
    "trained_digits_cnn",
]
