"""The estimators' shared part: scikit-learn's MLP parameters, training on nnx, pickling."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from nnx import training
from nnx.activations import Sigmoid, Tanh
from nnx.checks import UnscaledInputWarning
from nnx.errors import ConfigError, TrainingInterrupted
from nnx.layers import Dense, Dropout, Layer, ReLU
from nnx.losses import Loss
from nnx.model import DTYPES, Sequential
from nnx.optimizers import SGD, Adam, Optimizer
from nnx.schedules import Cosine
from nnx.sklearn.adapters import (
    EpochEnd,
    L2Gradient,
    SklearnLoss,
    check,
    freeze,
    glorot_uniform,
    is_int,
    is_number,
    rebuild,
)

ACTIVATIONS: dict[str, type[Layer] | None] = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}
SOLVERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")

# Checks of scikit-learn's suite that these estimators knowingly do not meet: {check name: reason}.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


class MLPBase(BaseEstimator):
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
        check(all(is_int(s, 1) for s in sizes), "hidden_layer_sizes", "an int or a sequence of ints >= 1", sizes)
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
        check(self.solver in SOLVERS, "solver", f"one of {SOLVERS}", self.solver)
        check(self.learning_rate == "constant", "learning_rate", '"constant"', self.learning_rate)
        check(self.activation in ACTIVATIONS, "activation", f"one of {tuple(ACTIVATIONS)}", self.activation)
        check(self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}", self.schedule)
        check(str(self.dtype) in DTYPES, "dtype", f"one of {DTYPES}", self.dtype)
        auto = isinstance(self.batch_size, str) and self.batch_size == "auto"
        check(auto or is_int(self.batch_size, 1), "batch_size", '"auto" or an int >= 1', self.batch_size)
        for name in ("alpha", "tol", "power_t"):
            value = getattr(self, name)
            check(is_number(value) and value >= 0, name, "a finite number >= 0", value)
        for name in ("learning_rate_init", "epsilon"):
            value = getattr(self, name)
            check(is_number(value) and value > 0, name, "a finite number > 0", value)
        for name in ("momentum", "beta_1", "beta_2", "dropout"):
            value = getattr(self, name)
            check(is_number(value) and 0 <= value < 1, name, "a number in [0, 1)", value)
        check(
            is_number(self.validation_fraction) and 0 < self.validation_fraction < 1,
            "validation_fraction",
            "a number in (0, 1)",
            self.validation_fraction,
        )
        for name in ("max_iter", "n_iter_no_change", "max_fun"):
            check(is_int(getattr(self, name), 1), name, "an int >= 1", getattr(self, name))
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
    def _fit(self, X: Any, y: Any, incremental: bool) -> MLPBase:
        self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_") or not (self.warm_start or incremental)
        X, targets, n_outputs = self._targets(X, y, first, incremental)
        rng = check_random_state(self.random_state)
        if first:
            self._initialize(X.shape[1], n_outputs, rng)
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
        loss = SklearnLoss(inner, weights, float(self.alpha), value_scale, grad_scale)
        names = [f"{prefix}.W" for prefix, layer in self.model_.named_layers() if isinstance(layer, Dense)]
        self._optimizer.l2 = {}
        self._optimizer.gradient_hooks[:] = (
            [L2Gradient(float(self.alpha), loss, self._optimizer, names)] if self.alpha else []
        )
        epochs = EpochEnd(self, n, (X_val, y_val) if self.early_stopping else None)
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

    def _initialize(self, n_features: int, n_outputs: int, rng: np.random.RandomState) -> None:
        weights = glorot_uniform([n_features, *self._hidden(), n_outputs], self.activation, rng)
        seed = int(rng.randint(np.iinfo(np.int32).max))  # the shuffling's and dropout's
        self.model_ = Sequential(
            *self._layers(n_features, n_outputs), backend=self.backend, seed=seed, dtype=str(self.dtype)
        )
        names = [
            f"{prefix}.{key}"
            for prefix, layer in self.model_.named_layers()
            if isinstance(layer, Dense)
            for key in "Wb"
        ]
        self.model_.set_weights(dict(zip(names, weights, strict=True)))
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

    # ---- predictions -------------------------------------------------------------------------
    def _outputs(self, X: Any) -> np.ndarray:
        """What ``model_.predict`` gives for X, (N, n_outputs), computed in float64: in float32 a row's
        result would change at the 1e-7 level with the number of rows predicted with it (the BLAS
        blocks a product by its size), and scikit-learn holds predictions to 1e-7."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        model = self.model_
        if model.dtype != np.float64:
            model = rebuild(freeze(model), model.backend, "float64")
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
            state["model_"] = freeze(model)
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
            self.model_ = rebuild(frozen, self.backend)
        frozen = self.__dict__.get("_optimizer")
        if isinstance(frozen, dict):
            optimizer = {"SGD": SGD, "Adam": Adam}[frozen["type"]](**frozen["config"])
            optimizer.load_state(self.model_.backend, frozen["state"], frozen["t"])
            self._optimizer = optimizer
