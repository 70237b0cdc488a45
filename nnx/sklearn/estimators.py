"""MLPClassifier and MLPRegressor: scikit-learn's MLP estimators, trained by nnx."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import validate_data

from nnx.losses import BinaryCrossentropy, Loss, MeanSquaredError, SparseCategoricalCrossentropy
from nnx.sklearn.base import MLPBase

PARAMETERS_DOC = """

    Parameters (scikit-learn's names, meanings and defaults):
        hidden_layer_sizes: (100,)   widths of the hidden layers (an int: one layer)
        activation: "relu"           of the hidden layers: "relu", "tanh", "logistic" or "identity"
        solver: "adam"               or "sgd" ("lbfgs" is not supported)
        alpha: 1e-4                  L2 penalty: loss + alpha/(2·N)·Σ‖W‖² over the weights, N the batch's rows
        batch_size: "auto"           min(200, n_samples), or an int (clipped to n_samples, with a warning)
        learning_rate: "constant"    the only one supported (see ``schedule``)
        learning_rate_init: 1e-3
        power_t, max_fun             accepted and ignored: only "invscaling" and "lbfgs" use them
        max_iter: 200                epochs
        shuffle: True, random_state: None, tol: 1e-4, verbose: False, warm_start: False
        momentum: 0.9, nesterovs_momentum: True           (sgd; momentum in [0, 1))
        early_stopping: False, validation_fraction: 0.1, n_iter_no_change: 10
        beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8         (adam)

    nnx's own:
        schedule: "constant"         or "cosine": the learning rate decays to 0 over max_iter epochs
                                     (partial_fit, which knows no end, keeps it constant)
        dropout: 0.0                 dropout probability after every hidden activation
        backend: None                "numpy", "cupy" or "auto"; None: nnx's default ($NNX_BACKEND, else "auto")
        dtype: "float32"             or "float64": the model's, and the inputs are cast to it

    Fitted attributes: ``model_`` (the nnx Sequential), ``n_features_in_`` (and
    ``feature_names_in_`` for a DataFrame), ``n_outputs_``, ``n_layers_``, ``out_activation_``,
    ``loss_`` and ``loss_curve_`` (with the penalty, per epoch), ``best_loss_``,
    ``validation_scores_`` and ``best_validation_score_`` (early stopping), ``n_iter_`` (epochs of
    the last call), ``t_`` (samples seen), and ``coefs_`` / ``intercepts_`` (NumPy copies).
    """


class MLPClassifier(ClassifierMixin, MLPBase):
    """A multilayer-perceptron classifier on nnx: scikit-learn's ``MLPClassifier``, trained by nnx.

    Softmax outputs with the log-loss for binary and multi-class targets (``predict_proba`` gives
    a column per class of ``classes_``), logistic outputs for multi-label indicator targets
    (N, labels). ``predict`` returns the original labels. See the module for the differences.
    """

    __doc__ += PARAMETERS_DOC

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on X (N, features) and labels y (N,) of any type, or a multi-label indicator (N, labels)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over (X, y); ``classes`` (every label of the whole data) is required on the first
        call, unless y is a multi-label indicator."""
        if not hasattr(self, "classes_"):
            multilabel = type_of_target(y).startswith("multilabel")
            if classes is None and not multilabel:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer().fit(y if multilabel else classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on the first call to partial_fit: {self.classes_}"
            )
        return self._fit(X, y, incremental=True)

    def _targets(self, X: Any, y: Any, first: bool, incremental: bool) -> tuple[np.ndarray, np.ndarray, int]:
        X, y = validate_data(self, X, y, multi_output=True, dtype=self._train_dtype(first), reset=first)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or not (self.warm_start or incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            seen = unique_labels(y)
            if self.warm_start and set(seen) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                    f"Previously got {self.classes_}, `y` has {seen}"
                )
            if len(np.setdiff1d(seen, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {seen}."
                )
        if self._multilabel:
            return X, self._label_binarizer.transform(y).astype(X.dtype), len(self.classes_)
        return X, np.searchsorted(self.classes_, y), len(self.classes_)

    @property
    def _multilabel(self) -> bool:
        return self._label_binarizer.y_type_.startswith("multilabel")

    def _inner_loss(self) -> tuple[Loss, float, float]:
        if self._multilabel:  # scikit-learn sums the labels' log-losses; nnx averages them
            return BinaryCrossentropy(), float(self.n_outputs_), float(self.n_outputs_)
        return SparseCategoricalCrossentropy(), 1.0, 1.0

    def _initialize(self, n_features: int, n_outputs: int, rng: np.random.RandomState) -> None:
        super()._initialize(n_features, n_outputs, rng)
        self.out_activation_ = "logistic" if self._multilabel else "softmax"

    def _decode(self, targets: np.ndarray) -> np.ndarray:
        return targets if self._multilabel else self.classes_[targets]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, classes), float64, in the order of ``classes_`` (for multi-label
        targets, each label's probability)."""
        p = self._outputs(X)
        return p if self._multilabel else p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log(predict_proba(X)), (N, classes)."""
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (N,), as the labels fit saw; multi-label: (N, labels) 0/1."""
        p = self.predict_proba(X)
        if self._multilabel:
            return self._label_binarizer.inverse_transform(p)
        return self.classes_[p.argmax(axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, MLPBase):
    """A multilayer-perceptron regressor on nnx: scikit-learn's ``MLPRegressor``, trained by nnx.

    Identity outputs with half the squared error; y (N,) or, for several outputs, (N, outputs).
    See the module for the differences from scikit-learn's.
    """

    __doc__ += PARAMETERS_DOC

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train on X (N, features) and y (N,) or (N, outputs)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True)

    def _targets(self, X: Any, y: Any, first: bool, incremental: bool) -> tuple[np.ndarray, np.ndarray, int]:
        dtype = self._train_dtype(first)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=dtype, reset=first)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        targets = y.reshape(y.shape[0], -1).astype(dtype)
        return X, targets, targets.shape[1]

    def _inner_loss(self) -> tuple[Loss, float, float]:
        # scikit-learn: half the mean squared error, with the gradient (outputs - y)/N summed over outputs
        return MeanSquaredError(), 0.5, self.n_outputs_ / 2

    def _initialize(self, n_features: int, n_outputs: int, rng: np.random.RandomState) -> None:
        super()._initialize(n_features, n_outputs, rng)
        self.out_activation_ = "identity"

    def _decode(self, targets: np.ndarray) -> np.ndarray:
        return targets[:, 0] if targets.shape[1] == 1 else targets

    def predict(self, X: Any) -> np.ndarray:
        """The outputs, float64: (N,) for one output, else (N, outputs)."""
        out = self._outputs(X)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


__all__ = ["MLPClassifier", "MLPRegressor"]
