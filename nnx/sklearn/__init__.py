"""scikit-learn estimators on nnx: ``MLPClassifier`` and ``MLPRegressor``.

    from nnx.sklearn import MLPClassifier  # in place of sklearn.neural_network.MLPClassifier

    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(100,), random_state=0))
    clf.fit(x, y).predict(x_new)  # the original labels, strings included

They take scikit-learn's MLP parameters, with its meanings, and train an nnx ``Sequential``
(``model_``) with nnx's optimizers and kernels, in float32 unless ``dtype`` says otherwise. They
need the sklearn extra: ``pip install 'nnx[sklearn]'``; ``import nnx`` never does.

What scikit-learn defines, they follow: the losses (log-loss over the rows; half the squared
error, whose gradient sums over the outputs), alpha's L2 penalty on the weights (not the biases)
added to the loss and its gradient, ``batch_size="auto"`` = min(200, n), ``tol`` with
``n_iter_no_change`` on the training loss or, with ``early_stopping``, on the validation score
(accuracy or R² of a held-out ``validation_fraction``, stratified for a classifier; the best
weights are restored), ``warm_start``, ``partial_fit``, the fitted attributes, and the initial
weights: Glorot uniform, weights and biases, drawn from ``random_state`` in scikit-learn's order,
so that both estimators start from the same numbers (but for a binary classifier's output layer).

Where they differ from scikit-learn's MLP:
    - solver "lbfgs", learning_rate "invscaling" and "adaptive", sparse inputs and
      ``sample_weight`` are not supported (``power_t`` and ``max_fun``, which only those use, are
      accepted and ignored); a value nnx cannot honour raises ConfigError (a ValueError) in fit.
    - A binary classifier has two softmax outputs (``n_outputs_`` 2), not one logistic unit; the
      loss is the same. A multi-label one has one logistic output per label, as scikit-learn's.
    - Adam adds ``epsilon`` to the bias-corrected √v̂ (Kingma & Ba's algorithm), scikit-learn to √v.
    - ``momentum`` must be below 1.
    - Predictions are computed in float64 from the trained weights, whatever ``dtype`` trained
      them, so that a row's prediction does not depend on the rows predicted with it.

Pickle: the estimators pickle (the layers, the weights and the optimizer's state as NumPy
arrays), as joblib and scikit-learn's model selection require; they load on the backend that
their ``backend`` parameter names (None and "auto": a GPU where there is one, else NumPy). This is
the one place in nnx where pickle is used; nnx's own model files (``nnx.save``) never use it.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"nnx.sklearn needs scikit-learn: pip install 'nnx[sklearn]' (in nnx's folder: pip install '.[sklearn]'); {exc}"
    ) from None

from nnx.sklearn.base import EXPECTED_FAILED_CHECKS
from nnx.sklearn.estimators import MLPClassifier, MLPRegressor

__all__ = ["EXPECTED_FAILED_CHECKS", "MLPClassifier", "MLPRegressor"]
