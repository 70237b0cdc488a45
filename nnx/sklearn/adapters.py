"""What the estimators train with: scikit-learn's loss normalisation and L2 penalty on nnx's
losses, the penalty's gradient hook, the per-epoch bookkeeping callback with the stopping rule,
scikit-learn's initial weights, the model as plain data (for pickling) and parameter checks."""

from __future__ import annotations

import numbers
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.contract import Array
from nnx.callbacks import Callback
from nnx.errors import ConfigError
from nnx.layers import LAYER_TYPES
from nnx.losses import Loss
from nnx.model import Sequential
from nnx.optimizers import Optimizer

if TYPE_CHECKING:
    from nnx.sklearn.base import MLPBase


class SklearnLoss(Loss):
    """An nnx loss normalised as scikit-learn's MLP normalises it, plus alpha's L2 penalty:

        value = value_scale·inner + alpha/(2·N)·Σ‖W‖²,   dL/doutputs = grad_scale·inner's

    for a batch of N rows; ``rows`` keeps N for the penalty's gradient (``L2Gradient``).
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
            squares = 0.0
            for w in self.weights:
                squares += backend.xp.vdot(w, w)
            value = value + self.alpha / (2 * self.rows) * squares
        return value, grad

    def check_targets(self, targets: Any, outputs_shape: tuple[int, int], name: str = "targets") -> Any:
        return self.inner.check_targets(targets, outputs_shape, name)


class L2Gradient:
    """A gradient hook (between backward and the step): the gradient of alpha's penalty, alpha/N·W
    for every Dense weight (``names``), not the biases, N the rows of the batch that ``loss`` saw
    last. It sets the optimizer's L2 penalties (Optimizer.l2), which its step adds to the gradient
    (inside the update kernel with Adam or momentum)."""

    def __init__(self, alpha: float, loss: SklearnLoss, optimizer: Optimizer, names: list[str]) -> None:
        self.alpha, self.loss, self.optimizer, self.names = alpha, loss, optimizer, names

    def __call__(self, model: Sequential) -> None:
        c = self.alpha / self.loss.rows
        for name in self.names:
            self.optimizer.l2[name] = c


class EpochEnd(Callback):
    """After every epoch of fit: scikit-learn's bookkeeping (``n_iter_``, ``t_``, ``loss_curve_``,
    the verbose lines) and its stopping rule, which ends fit through ``model.stop_training``."""

    def __init__(self, estimator: MLPBase, n_samples: int, validation: tuple[Any, Any] | None) -> None:
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
        self.stopped = self.model.stop_training = self._stalled()

    def _stalled(self) -> bool:
        """scikit-learn's stopping rule after an epoch: True when the training loss (or, with early
        stopping, the score of the validation pair) has not improved by tol for n_iter_no_change epochs."""
        est = self.estimator
        if self.validation is not None:
            score = est.score(*self.validation)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            improved = score >= est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_weights = est.model_.get_weights()
        else:
            improved = est.loss_ <= est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, est.loss_)
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        if est._no_improvement_count <= est.n_iter_no_change:
            return False
        if est.verbose:
            what = "Validation score" if self.validation is not None else "Training loss"
            print(f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive epochs.")
        return True


def glorot_uniform(widths: list[int], activation: str, rng: np.random.RandomState) -> list[np.ndarray]:
    """scikit-learn's MLP initialization, drawn from ``rng`` as scikit-learn draws it, for Dense
    layers of these widths (inputs, hidden..., outputs): for each layer, W (in, out) and then b (out,)
    uniform in ±√(f/(in + out)), f = 2 for "logistic" and 6 otherwise (Glorot & Bengio). From the same
    random_state, these are scikit-learn's initial coefs_ and intercepts_ wherever the layers' shapes
    agree (all but a binary classifier, which has one logistic output there and two softmax outputs
    in nnx.sklearn). [W, b, W, b, ...], float64."""
    factor = 2.0 if activation == "logistic" else 6.0
    arrays = []
    for fan_in, fan_out in pairwise(widths):
        bound = np.sqrt(factor / (fan_in + fan_out))
        arrays += [rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)]
    return arrays


def freeze(model: Sequential) -> dict[str, Any]:
    """The model as plain data: its layers' types and settings, weights (NumPy), seed, dtype and task."""
    return {
        "layers": [(type(layer).__name__, layer.config()) for layer in model.layers],
        "weights": model.get_weights(),
        "seed": model.seed,
        "dtype": model.dtype.name,
        "task": model.task,
    }


def rebuild(frozen: dict[str, Any], backend: Any, dtype: str | None = None) -> Sequential:
    """The model that ``freeze`` described, on ``backend``, in its dtype or ``dtype``."""
    layers = [LAYER_TYPES[name](**config) for name, config in frozen["layers"]]
    model = Sequential(*layers, backend=backend, seed=frozen["seed"], dtype=dtype or frozen["dtype"])
    model.set_weights(frozen["weights"])
    model.task = frozen["task"]
    return model


def check(ok: bool, name: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}; got {value!r}")


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def is_int(value: Any, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
