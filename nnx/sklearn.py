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
weights are restored), ``warm_start``, ``partial_fit``, and the fitted attributes.

Where they differ from scikit-learn's MLP:
    - solver "lbfgs", learning_rate "invscaling" and "adaptive", sparse inputs and
      ``sample_weight`` are not supported (``power_t`` and ``max_fun``, which only those use, are
      accepted and ignored); a value nnx cannot honour raises ConfigError (a ValueError) in fit.
    - The weights start as nnx's Dense starts them (He normal, zero biases), not Glorot uniform.
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

import numbers
import warnings
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:
    raise ImportError(
        f"nnx.sklearn needs scikit-learn: pip install 'nnx[sklearn]' (in nnx's folder: pip install '.[sklearn]'); {exc}"
    ) from None

from backends.contract import Array
from nnx import training
from nnx.activations import Sigmoid, Tanh
from nnx.callbacks import Callback
from nnx.checks import UnscaledInputWarning
from nnx.errors import ConfigError, TrainingInterrupted
from nnx.layers import LAYER_TYPES, Dense, Dropout, Layer, ReLU
from nnx.losses import BinaryCrossentropy, Loss, MeanSquaredError, SparseCategoricalCrossentropy
from nnx.model import DTYPES, Sequential
from nnx.optimizers import SGD, Adam, Optimizer
from nnx.schedules import Cosine

ACTIVATIONS: dict[str, type[Layer] | None] = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}
SOLVERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")

# Checks of scikit-learn's suite that these estimators knowingly do not meet: {check name: reason}.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}

_PARAMETERS = """

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


class _SklearnLoss(Loss):
    """An nnx loss normalised as scikit-learn's MLP normalises it, plus alpha's L2 penalty:

        value = value_scale·inner + alpha/(2·N)·Σ‖W‖²,   dL/doutputs = grad_scale·inner's

    for a batch of N rows; ``rows`` keeps N for the penalty's gradient (``_L2Gradient``).
    """

    def __init__(self, inner: Loss, weights: list[Array], alpha: float, value_scale: float, grad_scale: float) -> None:
        super().__init__()
        self.inner, self.weights, self.alpha = inner, weights, alpha
        self.value_scale, self.grad_scale = value_scale, grad_scale
        self.task, self.takes_logits = inner.task, inner.takes_logits
        self.metric = None  # fit need not count correct predictions at every step
        self.target_dtype, self.outputs_name = inner.target_dtype, inner.outputs_name
        self.rows = 1

    def compute(self, backend: Any, outputs: Array, targets: Array) -> tuple[Array, Array]:
        value, grad = self.inner.compute(backend, outputs, targets)
        self.rows = outputs.shape[0]
        if self.grad_scale != 1.0:
            grad *= self.grad_scale
        if self.value_scale != 1.0:
            value = value * self.value_scale
        if self.alpha:
            xp = backend.xp
            value = value + self.alpha / (2 * self.rows) * sum(xp.vdot(w, w) for w in self.weights)
        return value, grad

    def check_targets(self, targets: Any, outputs_shape: tuple[int, int], name: str = "targets") -> Any:
        return self.inner.check_targets(targets, outputs_shape, name)


class _L2Gradient:
    """A gradient hook (between backward and the step): dW += alpha/N·W for every Dense weight, not
    the biases, N the rows of the batch that ``loss`` saw last: the gradient of alpha's penalty."""

    def __init__(self, alpha: float, loss: _SklearnLoss) -> None:
        self.alpha, self.loss = alpha, loss
        self._scratch: dict[int, Array] = {}

    def __call__(self, model: Sequential) -> None:
        c = self.alpha / self.loss.rows
        for i, layer in enumerate(model.layers):
            if isinstance(layer, Dense):
                w = layer.params["W"]
                scratch = self._scratch.get(i)
                if scratch is None:
                    scratch = self._scratch[i] = model.backend.empty(w.shape, w.dtype)
                model.backend.xp.multiply(w, c, out=scratch)
                layer.grads["W"] += scratch


class _Epochs(Callback):
    """After every epoch of fit: scikit-learn's bookkeeping (``n_iter_``, ``t_``, ``loss_curve_``,
    the verbose lines) and its stopping rule, which ends fit through ``model.stop_training``."""

    def __init__(self, estimator: _MLPBase, n_samples: int, validation: tuple[Any, Any] | None) -> None:
        self.estimator, self.n_samples, self.validation = estimator, n_samples, validation
        self.stopped = False

    def on_train_begin(self, model: Sequential, epochs: int, n_samples: int) -> None:
        self.model = model

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        est = self.estimator
        est.n_iter_ += 1
        est.t_ += self.n_samples
        est._epochs += 1
        est.loss_ = logs["loss"]
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        self.stopped = self.model.stop_training = est._stalled(self.validation)


def _freeze(model: Sequential) -> dict[str, Any]:
    """The model as plain data: its layers' types and settings, weights (NumPy), seed, dtype and task."""
    return {
        "layers": [(type(layer).__name__, layer.config()) for layer in model.layers],
        "weights": model.get_weights(),
        "seed": model.seed,
        "dtype": model.dtype.name,
        "task": model.task,
    }


def _rebuild(frozen: dict[str, Any], backend: Any, dtype: str | None = None) -> Sequential:
    """The model that ``_freeze`` described, on ``backend``, in its dtype or ``dtype``."""
    layers = [LAYER_TYPES[name](**config) for name, config in frozen["layers"]]
    model = Sequential(*layers, backend=backend, seed=frozen["seed"], dtype=dtype or frozen["dtype"])
    model.set_weights(frozen["weights"])
    model.task = frozen["task"]
    return model


def _check(ok: bool, name: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}; got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


class _MLPBase(BaseEstimator):
    """What the classifier and the regressor share: parameters, training, pickling."""

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        schedule: str = "constant",
        dropout: float = 0.0,
        backend: str | None = None,
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.schedule = schedule
        self.dropout = dropout
        self.backend = backend
        self.dtype = dtype

    # ---- what a subclass provides ------------------------------------------------------------
    def _targets(self, X: Any, y: Any, first: bool, incremental: bool) -> tuple[np.ndarray, np.ndarray, int]:
        """(X (N, features) of the training dtype, targets for the loss, the number of outputs); checks
        y and, for a classifier, sets ``classes_``."""
        raise NotImplementedError

    def _inner_loss(self) -> tuple[Loss, float, float]:
        """(the nnx loss, the scale of its value, the scale of its gradient) that make scikit-learn's loss."""
        raise NotImplementedError

    # ---- parameters --------------------------------------------------------------------------
    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if isinstance(sizes, (list, tuple, np.ndarray)) else [sizes]
        _check(all(_is_int(s, 1) for s in sizes), "hidden_layer_sizes", "an int or a sequence of ints >= 1", sizes)
        return [int(s) for s in sizes]

    def _check_params(self) -> None:
        """Raise ConfigError for a parameter out of its range or one that nnx cannot honour."""
        if self.solver == "lbfgs":
            raise ConfigError('solver="lbfgs" is not supported by nnx.sklearn; use "adam" or "sgd"')
        if self.learning_rate in ("invscaling", "adaptive"):
            raise ConfigError(
                f'learning_rate="{self.learning_rate}" is not supported by nnx.sklearn; use "constant", '
                'or schedule="cosine" for a decaying learning rate'
            )
        _check(self.solver in SOLVERS, "solver", f"one of {SOLVERS}", self.solver)
        _check(self.learning_rate == "constant", "learning_rate", '"constant"', self.learning_rate)
        _check(self.activation in ACTIVATIONS, "activation", f"one of {tuple(ACTIVATIONS)}", self.activation)
        _check(self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}", self.schedule)
        _check(str(self.dtype) in DTYPES, "dtype", f"one of {DTYPES}", self.dtype)
        auto = isinstance(self.batch_size, str) and self.batch_size == "auto"
        _check(auto or _is_int(self.batch_size, 1), "batch_size", '"auto" or an int >= 1', self.batch_size)
        for name in ("alpha", "tol", "power_t"):
            value = getattr(self, name)
            _check(_is_number(value) and value >= 0, name, "a finite number >= 0", value)
        for name in ("learning_rate_init", "epsilon"):
            value = getattr(self, name)
            _check(_is_number(value) and value > 0, name, "a finite number > 0", value)
        for name in ("momentum", "beta_1", "beta_2", "dropout"):
            value = getattr(self, name)
            _check(_is_number(value) and 0 <= value < 1, name, "a number in [0, 1)", value)
        _check(
            _is_number(self.validation_fraction) and 0 < self.validation_fraction < 1,
            "validation_fraction",
            "a number in (0, 1)",
            self.validation_fraction,
        )
        for name in ("max_iter", "n_iter_no_change", "max_fun"):
            _check(_is_int(getattr(self, name), 1), name, "an int >= 1", getattr(self, name))
        self._hidden()

    # ---- building ----------------------------------------------------------------------------
    def _layers(self, n_features: int, n_outputs: int) -> list[Layer]:
        layers: list[Layer] = []
        width = n_features
        for size in self._hidden():
            layers.append(Dense(width, size))
            activation = ACTIVATIONS[self.activation]
            if activation is not None:
                layers.append(activation())
            if self.dropout:
                layers.append(Dropout(self.dropout))
            width = size
        layers.append(Dense(width, n_outputs))
        return layers

    def _new_optimizer(self) -> Optimizer:
        if self.solver == "sgd":
            return SGD(self.learning_rate_init, momentum=self.momentum, nesterov=self.nesterovs_momentum)
        return Adam(self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)

    def _train_dtype(self, first: bool) -> np.dtype:
        return np.dtype(str(self.dtype)) if first else self.model_.dtype

    # ---- training ----------------------------------------------------------------------------
    def _fit(self, X: Any, y: Any, incremental: bool) -> _MLPBase:
        self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_") or not (self.warm_start or incremental)
        X, targets, n_outputs = self._targets(X, y, first, incremental)
        rng = check_random_state(self.random_state)
        if first:
            self._initialize(X.shape[1], n_outputs, int(rng.randint(np.iinfo(np.int32).max)))
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; this estimator was fitted with {self.n_outputs_}")
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer()  # as scikit-learn: a warm start begins a new optimizer
        if self.early_stopping:
            X, X_val, targets, y_val = self._validation_split(X, targets, y, rng)
        n = X.shape[0]
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=3
            )
        batch_size = min(200 if self.batch_size == "auto" else self.batch_size, n)
        inner, value_scale, grad_scale = self._inner_loss()
        weights = [layer.params["W"] for layer in self.model_.layers if isinstance(layer, Dense)]
        loss = _SklearnLoss(inner, weights, float(self.alpha), value_scale, grad_scale)
        self._optimizer.gradient_hooks[:] = [_L2Gradient(float(self.alpha), loss)] if self.alpha else []
        epochs = _Epochs(self, n, (X_val, y_val) if self.early_stopping else None)
        start = self._epochs if incremental else 0  # fit starts the shuffling seeds and the schedule anew
        schedule = Cosine() if self.schedule == "cosine" and not incremental else None
        self.n_iter_ = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnscaledInputWarning)  # the user chose the preprocessing
                training.fit(
                    self.model_, X, targets, loss=loss, optimizer=self._optimizer, initial_epoch=start,
                    epochs=start + (1 if incremental else self.max_iter), batch_size=batch_size,
                    shuffle=bool(self.shuffle), schedule=schedule, callbacks=[epochs],
                )  # fmt: skip
        except TrainingInterrupted:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        else:
            if not incremental and not epochs.stopped:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                    "hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        if self.early_stopping:
            self.model_.set_weights(self._best_weights)
        return self

    def _initialize(self, n_features: int, n_outputs: int, seed: int) -> None:
        self.model_ = Sequential(
            *self._layers(n_features, n_outputs), backend=self.backend, seed=seed, dtype=str(self.dtype)
        )
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(self._hidden()) + 2
        self.t_ = 0
        self._epochs = 0  # every epoch this model has trained, for the shuffling and dropout seeds
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
            self._best_weights = self.model_.get_weights()
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _validation_split(self, X: np.ndarray, targets: np.ndarray, y: Any, rng: np.random.RandomState) -> Any:
        """(X_train, X_val, targets_train, y_val): scikit-learn's held-out split, stratified for a
        single-output classifier; y_val as ``score`` takes it."""
        stratify = targets if isinstance(self, ClassifierMixin) and targets.ndim == 1 else None
        X_train, X_val, t_train, t_val = train_test_split(
            X, targets, random_state=rng, test_size=self.validation_fraction, stratify=stratify
        )
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
            )
        return X_train, X_val, t_train, self._decode(t_val)

    def _decode(self, targets: np.ndarray) -> np.ndarray:
        """Training targets as ``score`` takes them."""
        return targets

    def _stalled(self, validation: tuple[Any, Any] | None) -> bool:
        """scikit-learn's stopping rule after an epoch: True when the training loss (or, with early
        stopping, the score of the ``validation`` pair) has not improved by tol for n_iter_no_change epochs."""
        if validation is not None:
            score = self.score(*validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self.model_.get_weights()
        else:
            improved = self.loss_ <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.verbose:
            what = "Validation score" if validation is not None else "Training loss"
            print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs.")
        return True

    # ---- predictions -------------------------------------------------------------------------
    def _outputs(self, X: Any) -> np.ndarray:
        """What ``model_.predict`` gives for X, (N, n_outputs), computed in float64: in float32 a row's
        result would change at the 1e-7 level with the number of rows predicted with it (the BLAS
        blocks a product by its size), and scikit-learn holds predictions to 1e-7."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        model = self.model_
        if model.dtype != np.float64:
            model = _rebuild(_freeze(model), model.backend, "float64")
        return model.predict(X)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices (in, out) of the Dense layers, NumPy copies (scikit-learn's coefs_)."""
        check_is_fitted(self)
        return [w for name, w in self.model_.get_weights().items() if name.endswith(".W")]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The biases (out,) of the Dense layers, NumPy copies (scikit-learn's intercepts_)."""
        check_is_fitted(self)
        return [b for name, b in self.model_.get_weights().items() if name.endswith(".b")]

    # ---- pickling ----------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The estimator's state with the model and the optimizer as NumPy arrays and settings."""
        state = dict(super().__getstate__())
        model: Sequential | None = state.get("model_")
        if model is not None:
            state["model_"] = _freeze(model)
        optimizer: Optimizer | None = state.get("_optimizer")
        if optimizer is not None:
            arrays = {k: model.backend.to_numpy(a).copy() for k, a in optimizer.state_arrays().items()}
            config = {"type": type(optimizer).__name__, "config": optimizer.config(), "t": optimizer.t}
            state["_optimizer"] = {**config, "state": arrays}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        frozen = self.__dict__.get("model_")
        if isinstance(frozen, dict):
            self.model_ = _rebuild(frozen, self.backend)
        frozen = self.__dict__.get("_optimizer")
        if isinstance(frozen, dict):
            optimizer = {"SGD": SGD, "Adam": Adam}[frozen["type"]](**frozen["config"])
            optimizer.load_state(self.model_.backend, frozen["state"], frozen["t"])
            self._optimizer = optimizer


class MLPClassifier(ClassifierMixin, _MLPBase):
    """A multilayer-perceptron classifier on nnx: scikit-learn's ``MLPClassifier``, trained by nnx.

    Softmax outputs with the log-loss for binary and multi-class targets (``predict_proba`` gives
    a column per class of ``classes_``), logistic outputs for multi-label indicator targets
    (N, labels). ``predict`` returns the original labels. See the module for the differences.
    """

    __doc__ += _PARAMETERS

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

    def _initialize(self, n_features: int, n_outputs: int, seed: int) -> None:
        super()._initialize(n_features, n_outputs, seed)
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


class MLPRegressor(RegressorMixin, _MLPBase):
    """A multilayer-perceptron regressor on nnx: scikit-learn's ``MLPRegressor``, trained by nnx.

    Identity outputs with half the squared error; y (N,) or, for several outputs, (N, outputs).
    See the module for the differences from scikit-learn's.
    """

    __doc__ += _PARAMETERS

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

    def _initialize(self, n_features: int, n_outputs: int, seed: int) -> None:
        super()._initialize(n_features, n_outputs, seed)
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


__all__ = ["EXPECTED_FAILED_CHECKS", "MLPClassifier", "MLPRegressor"]
