"""scikit-learn compatible multi-layer perceptrons trained with PyTorch.

The estimators here take an already prepared numeric design matrix (scaled numbers, one-hot
encoded categories) and fit a plain MLP on it::

    Linear(n_features, hidden_units) -> ReLU -> Dropout   (repeated ``num_layers`` times)
    Linear(hidden_units, n_outputs)

* :class:`TorchMLPClassifier` minimises cross-entropy; ``predict_proba`` gives softmax
  probabilities of shape ``(n_rows, n_classes)``.
* :class:`TorchMLPRegressor` minimises mean squared error on an internally standardised target
  and undoes the standardisation on ``predict``.

Both are ordinary scikit-learn estimators: the constructor only stores its keyword-only
parameters, so ``get_params``, ``set_params``, ``clone`` and pipelines work. Training runs on
the device chosen by :func:`select_device` (CPU or CUDA); the fitted weights are always kept on
the CPU in ``state_dict_`` so a model trained on a GPU pickles and loads on a CPU-only machine.
The network used for prediction is rebuilt lazily from ``state_dict_`` and cached (it is never
pickled).
"""

from __future__ import annotations

import contextlib
import copy
import math
from abc import ABCMeta, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from dripml.errors import ResourceError

__all__ = [
    "DeviceUnavailableError",
    "TorchMLPClassifier",
    "TorchMLPRegressor",
    "build_mlp",
    "select_device",
    "use_mixed_precision",
]

# Rows per forward pass in predict / validation: bounds memory (and sparse densification).
_PREDICT_CHUNK_ROWS = 8192
# Dense training data up to this many bytes is copied to the GPU once instead of per batch.
_GPU_RESIDENT_BYTES = 2 * 1024**3


class DeviceUnavailableError(ResourceError, ValueError):
    """The requested torch device does not exist on this machine.

    Subclasses both :class:`dripml.errors.ResourceError` and :class:`ValueError`, so callers may
    catch either.
    """


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


def select_device(device: str = "auto", gpus: float | int = 0) -> torch.device:
    """Resolve a device string into a :class:`torch.device`.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (N a zero-based GPU index).
        gpus: GPUs granted to this process by the resource spec (may be fractional, e.g. 0.5).
            Only used by ``"auto"``: a GPU is picked only if ``gpus > 0`` *and* CUDA is visible.

    Returns:
        ``torch.device("cpu")`` or ``torch.device("cuda"[, N])``.

    Raises:
        DeviceUnavailableError: (a ``ValueError``) ``"cuda"``/``"cuda:N"`` was asked for but no
            CUDA device is visible, or GPU index N does not exist.
        ValueError: ``device`` is not one of the accepted forms, or ``gpus`` is negative.
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0:
        raise ValueError(f"gpus must be a number >= 0, got {gpus!r}")
    if not isinstance(device, str):
        raise ValueError(
            f"device must be a string ('auto', 'cpu', 'cuda' or 'cuda:N'), got {device!r}"
        )
    text = device.strip().lower()
    if text == "auto":
        if gpus > 0 and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from exc
    if parsed.type == "cpu":
        if parsed.index not in (None, 0):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        return torch.device("cpu")
    if parsed.type != "cuda":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device={device!r} was requested but no CUDA device is visible "
            "(torch.cuda.is_available() is False). Set device to 'cpu' (or 'auto'), or request "
            "GPUs in the spec's resources (gpus > 0) so the trial is scheduled on a GPU node."
        )
    if parsed.index is not None:
        count = torch.cuda.device_count()
        if parsed.index >= count:
            raise DeviceUnavailableError(
                f"device={device!r} was requested but only {count} CUDA device(s) are visible "
                f"(valid indices 0..{count - 1}). Use 'cuda' or a smaller index, or set device "
                "to 'cpu'."
            )
    return parsed


def use_mixed_precision(device: torch.device | str, flag: bool | None) -> bool:
    """Decide whether to run forward passes under autocast.

    Args:
        device: the resolved device (a :class:`torch.device` or a string such as ``"cuda:0"``).
        flag: ``True``/``False`` forces it on/off; ``None`` means "only on CUDA".

    Returns:
        ``True`` to use autocast (bf16, or fp16 on GPUs without bf16 support; bf16 on CPU).
    """
    if flag is not None:
        return bool(flag)
    return torch.device(device).type == "cuda"


def _autocast_dtype(device: torch.device) -> torch.dtype:
    """Low-precision dtype for autocast on ``device`` (bf16 where supported, else fp16)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_autocast_dtype(device))


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (global in torch); restore it after.
    ``None`` (or 0) leaves it as it is."""
    previous = torch.get_num_threads()
    if not num_threads or previous == num_threads:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_mlp(
    n_features: int, n_outputs: int, hidden_units: int, num_layers: int, dropout: float
) -> nn.Sequential:
    """Build the MLP: ``num_layers`` x (Linear -> ReLU -> Dropout), then Linear to outputs.

    With ``num_layers == 0`` this is a single linear layer. Input shape ``(n, n_features)``,
    output shape ``(n, n_outputs)`` (logits for classification, standardised values for
    regression).
    """
    layers: list[nn.Module] = []
    width = n_features
    for _ in range(num_layers):
        layers.append(nn.Linear(width, hidden_units))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden_units
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# Data helpers
# --------------------------------------------------------------------------------------------


class _Rows:
    """Row access to a dense or sparse design matrix as float32 tensors on ``device``.

    Dense data is converted to a float32 tensor once (and moved to the GPU once if it is small
    enough); sparse data stays a CSR matrix and only each requested batch is densified.
    """

    def __init__(self, X: np.ndarray | sp.spmatrix | sp.sparray, device: torch.device) -> None:
        self.device = device
        self.sparse = sp.issparse(X)
        if self.sparse:
            self.X: Any = sp.csr_matrix(X, dtype=np.float32)
            self.resident = False
        else:
            dense = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
            self.resident = device.type == "cpu" or dense.nbytes <= _GPU_RESIDENT_BYTES
            self.X = dense.to(device) if self.resident else dense
        self.n_rows = int(X.shape[0])

    def take(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` (1-D int array) as a float32 tensor of shape (len(idx), n_features)."""
        if self.sparse:
            batch = torch.from_numpy(self.X[idx].toarray())
            return batch.to(self.device, non_blocking=True)
        if self.resident:
            return self.X[torch.from_numpy(idx).to(self.device)]
        return self.X[torch.from_numpy(idx)].to(self.device, non_blocking=True)


def _chunk_to_tensor(
    X: np.ndarray | sp.spmatrix | sp.sparray, start: int, stop: int, device: torch.device
) -> torch.Tensor:
    """Rows ``start:stop`` of X as a float32 tensor on ``device`` (sparse densified per chunk)."""
    part = X[start:stop]
    if sp.issparse(part):
        part = part.toarray()
    tensor = torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))
    return tensor if device.type == "cpu" else tensor.to(device)


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------


class _TorchMLPBase(BaseEstimator, metaclass=ABCMeta):
    """Shared fit / predict machinery; see :class:`TorchMLPClassifier` for the parameters."""

    _task: str = ""

    def __init__(
        self,
        *,
        hidden_units: int = 128,
        num_layers: int = 2,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        epochs: int = 20,
        batch_size: int = 256,
        device: str = "auto",
        num_threads: int | None = None,
        random_state: int | None = 0,
        validation_fraction: float = 0.0,
        early_stopping_patience: int | None = None,
        mixed_precision: bool | None = None,
    ) -> None:
        self.hidden_units = hidden_units
        self.num_layers = num_layers
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.mixed_precision = mixed_precision

    # -- sklearn plumbing ---------------------------------------------------------------------

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        # The cached torch module is rebuilt from state_dict_ on first use after loading.
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._cache = {}

    # -- hooks for subclasses -------------------------------------------------------------------

    @abstractmethod
    def _encode_targets(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        """Return (training targets, n_outputs); sets fitted target attributes."""

    @abstractmethod
    def _loss(self) -> nn.Module:
        """The training loss (cross-entropy for classes, MSE for values)."""

    @abstractmethod
    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        """Targets as the tensor the loss expects."""

    # -- validation -----------------------------------------------------------------------------

    def _check_params(self) -> None:
        def _int(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

        _int("hidden_units", 1)
        _int("num_layers", 0)
        _int("epochs", 1)
        _int("batch_size", 1)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not float(self.learning_rate) > 0.0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not float(self.weight_decay) >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= float(self.validation_fraction) < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}"
            )
        if self.num_threads is not None:
            _int("num_threads", 1)
        if self.early_stopping_patience is not None:
            _int("early_stopping_patience", 1)
            if float(self.validation_fraction) <= 0.0:
                raise ValueError(
                    "early_stopping_patience needs a held-out slice: set validation_fraction "
                    f"> 0 (got {self.validation_fraction!r}) or early_stopping_patience=None"
                )

    # -- training -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> _TorchMLPBase:
        """Train the network.

        Args:
            X: array-like or scipy sparse matrix, shape (n_rows, n_features), numeric and already
                scaled / one-hot encoded. Sparse input is densified one batch at a time.
            y: shape (n_rows,); class labels (classifier) or floats (regressor; the regressor
                also accepts shape (n_rows, n_targets)).

        Returns:
            self, fitted: ``state_dict_`` (CPU tensors), ``n_features_in_``, ``loss_curve_``
            (mean training loss per epoch), ``validation_loss_curve_`` (empty without a held-out
            slice), ``n_iter_`` (epochs run), ``best_epoch_``, ``device_`` (device trained on)
            and ``mixed_precision_`` (whether autocast was used).

        Raises:
            ValueError: invalid parameters, non-finite or wrongly shaped input, fewer than two
                classes, too few rows for the validation split, or training diverged (NaN loss).
            DeviceUnavailableError: ``device`` asks for CUDA that is not visible.
        """
        self._check_params()
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float32, np.float64],
            multi_output=self._task == "regression",
            y_numeric=self._task == "regression",
        )
        targets, n_outputs = self._encode_targets(y)

        # A fitting process may use any GPU it can see: schedulers such as Ray hide GPUs that were
        # not granted (CUDA_VISIBLE_DEVICES), so "auto" here means "CUDA if visible".
        device = select_device(self.device, gpus=1)
        amp = use_mixed_precision(device, self.mixed_precision)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        rng = np.random.default_rng(seed)

        n_rows = int(X.shape[0])
        order = rng.permutation(n_rows)
        n_val = 0
        if self.validation_fraction > 0:
            n_val = max(1, int(math.floor(self.validation_fraction * n_rows)))
            if n_rows - n_val < 1:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves no training rows "
                    f"out of {n_rows}; lower it or pass more data"
                )
        val_idx, train_idx = np.sort(order[:n_val]), order[n_val:]

        # Inference cache ({"device": torch.device, "module": nn.Sequential}); never pickled.
        # Mutated in place by predict so that predict does not change __dict__.
        self._cache: dict[str, Any] = {}
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with (
            torch_threads(self.num_threads if device.type == "cpu" else None),
            torch.random.fork_rng(devices=fork_devices),
        ):
            torch.manual_seed(seed)
            model = build_mlp(
                int(X.shape[1]), n_outputs, self.hidden_units, self.num_layers, self.dropout
            ).to(device)
            rows = _Rows(X, device)
            y_all = self._target_tensor(targets).to(device)
            self._train(model, rows, y_all, train_idx, val_idx, rng, device, amp)

        self.state_dict_ = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        self.architecture_ = {
            "n_features": int(X.shape[1]),
            "n_outputs": int(n_outputs),
            "hidden_units": int(self.hidden_units),
            "num_layers": int(self.num_layers),
            "dropout": float(self.dropout),
        }
        self.device_ = str(device)
        self.mixed_precision_ = bool(amp)
        return self

    def _train(
        self,
        model: nn.Sequential,
        rows: _Rows,
        y_all: torch.Tensor,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        rng: np.random.Generator,
        device: torch.device,
        amp: bool,
    ) -> None:
        loss_fn = self._loss()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=float(self.learning_rate), weight_decay=float(self.weight_decay)
        )
        fp16 = amp and device.type == "cuda" and _autocast_dtype(device) == torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        batch_size = int(self.batch_size)
        patience = self.early_stopping_patience
        y_train_index_device = y_all.device

        self.loss_curve_: list[float] = []
        self.validation_loss_curve_: list[float] = []
        self.best_epoch_ = 0
        best_val = math.inf
        best_state: dict[str, torch.Tensor] | None = None
        stale = 0
        epoch = 0
        for epoch in range(1, int(self.epochs) + 1):
            model.train()
            perm = train_idx[rng.permutation(len(train_idx))]
            total = torch.zeros((), device=device)
            for start in range(0, len(perm), batch_size):
                idx = perm[start : start + batch_size]
                xb = rows.take(idx)
                yb = y_all[torch.from_numpy(idx).to(y_train_index_device)]
                with _autocast(device, amp):
                    out = model(xb)
                loss = loss_fn(out.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.detach() * len(idx)
            epoch_loss = float(total.item()) / max(1, len(perm))
            if not math.isfinite(epoch_loss):
                raise ValueError(
                    f"training diverged at epoch {epoch} (loss is {epoch_loss}); lower "
                    f"learning_rate (now {self.learning_rate}) or check the input scaling"
                )
            self.loss_curve_.append(epoch_loss)
            if len(val_idx) == 0:
                self.best_epoch_ = epoch
                continue
            val_loss = self._evaluate(model, rows, y_all, val_idx, loss_fn, device, amp)
            self.validation_loss_curve_.append(val_loss)
            if val_loss < best_val:
                best_val, stale, self.best_epoch_ = val_loss, 0, epoch
                if patience is not None:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if patience is not None and stale >= patience:
                    break
        self.n_iter_ = epoch
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()

    @staticmethod
    def _evaluate(
        model: nn.Sequential,
        rows: _Rows,
        y_all: torch.Tensor,
        idx: np.ndarray,
        loss_fn: nn.Module,
        device: torch.device,
        amp: bool,
    ) -> float:
        """Mean loss over rows ``idx`` in eval mode (no dropout, no gradients)."""
        model.eval()
        total = torch.zeros((), device=device)
        with torch.inference_mode():
            for start in range(0, len(idx), _PREDICT_CHUNK_ROWS):
                part = idx[start : start + _PREDICT_CHUNK_ROWS]
                with _autocast(device, amp):
                    out = model(rows.take(part))
                yb = y_all[torch.from_numpy(part).to(y_all.device)]
                total += loss_fn(out.float(), yb) * len(part)
        return float(total.item()) / len(idx)

    # -- inference ------------------------------------------------------------------------------

    def _inference_device(self) -> torch.device:
        """CPU unless ``device`` explicitly names CUDA *and* CUDA is visible here."""
        if str(self.device).strip().lower() in ("auto", "cpu"):
            return torch.device("cpu")
        try:
            return select_device(self.device)
        except ValueError:
            # A GPU-trained model loaded on a CPU-only machine still predicts.
            return torch.device("cpu")

    def _get_module(self, device: torch.device) -> nn.Sequential:
        """The fitted network in eval mode on ``device``, built from state_dict_ and cached."""
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = self._cache = {}
        if cache.get("device") == device:
            return cache["module"]
        arch = self.architecture_
        module = build_mlp(
            arch["n_features"],
            arch["n_outputs"],
            arch["hidden_units"],
            arch["num_layers"],
            arch["dropout"],
        )
        module.load_state_dict(self.state_dict_)
        module = module.to(device).eval()
        for param in module.parameters():
            param.requires_grad_(False)
        cache.clear()
        cache.update(device=device, module=module)
        return module

    def _forward(self, X: Any) -> np.ndarray:
        """Raw network outputs, float32 array of shape (n_rows, n_outputs)."""
        check_is_fitted(self, "state_dict_")
        X = validate_data(
            self,
            X,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float32, np.float64],
            reset=False,
        )
        if sp.issparse(X):
            X = X.tocsr()
        device = self._inference_device()
        module = self._get_module(device)
        amp = use_mixed_precision(device, self.mixed_precision)
        n_rows = int(X.shape[0])
        with torch_threads(self.num_threads), torch.inference_mode():
            if n_rows <= _PREDICT_CHUNK_ROWS:
                with _autocast(device, amp):
                    out = module(_chunk_to_tensor(X, 0, n_rows, device))
                return out.float().cpu().numpy()
            parts = []
            for start in range(0, n_rows, _PREDICT_CHUNK_ROWS):
                with _autocast(device, amp):
                    out = module(_chunk_to_tensor(X, start, start + _PREDICT_CHUNK_ROWS, device))
                parts.append(out.float().cpu().numpy())
            return np.concatenate(parts, axis=0)


class TorchMLPClassifier(ClassifierMixin, _TorchMLPBase):
    """MLP classifier (cross-entropy, AdamW) with a scikit-learn interface.

    Parameters (keyword-only):
        hidden_units: width of each hidden layer (>= 1).
        num_layers: number of hidden Linear-ReLU-Dropout blocks (>= 0; 0 = linear model).
        dropout: dropout probability after each hidden layer, in [0, 1).
        learning_rate: AdamW learning rate (> 0).
        weight_decay: AdamW decoupled weight decay (>= 0).
        epochs: maximum number of passes over the training rows (>= 1).
        batch_size: rows per optimisation step (>= 1).
        device: "auto" (CUDA if visible, else CPU), "cpu", "cuda" or "cuda:N"; see
            :func:`select_device`. Prediction runs on the CPU unless this names CUDA and CUDA
            is visible.
        num_threads: torch intra-op threads on the CPU while fitting/predicting (restored
            afterwards); None leaves torch's default.
        random_state: seed for weight init, dropout, shuffling and the validation split. With
            an int, CPU training is deterministic. None draws a fresh seed.
        validation_fraction: fraction of rows held out (random slice) to compute
            ``validation_loss_curve_``, in [0, 1).
        early_stopping_patience: stop after this many epochs without improvement of the
            held-out loss and restore the best weights; requires validation_fraction > 0.
        mixed_precision: autocast (bf16, or fp16 on GPUs without bf16) on/off; None = only on
            CUDA.

    Fitted attributes: ``classes_`` (np.unique(y)), ``n_features_in_``, ``state_dict_`` (CPU
    tensors), ``architecture_``, ``loss_curve_``, ``validation_loss_curve_``, ``n_iter_``,
    ``best_epoch_``, ``device_``, ``mixed_precision_``.
    """

    _task = "classification"

    def _encode_targets(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                "the classifier needs at least 2 classes in y, got only 1 class "
                f"({self.classes_.tolist()}); check the label column"
            )
        return codes.astype(np.int64, copy=False), len(self.classes_)

    def _loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Args:
            X: array-like or sparse matrix, shape (n_rows, n_features_in_).

        Returns:
            float64 array of shape (n_rows, n_classes); columns follow ``classes_``; each row
            sums to 1.

        Raises:
            sklearn.exceptions.NotFittedError: called before ``fit``.
            ValueError: wrong number of features or non-finite values.
        """
        logits = self._forward(X).astype(np.float64, copy=False)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class label per row, shape (n_rows,), values from ``classes_``."""
        logits = self._forward(X)
        return self.classes_[np.argmax(logits, axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLPBase):
    """MLP regressor (MSE on a standardised target, AdamW) with a scikit-learn interface.

    The target is standardised with its training mean and standard deviation (per column for a
    2-D target); ``predict`` returns values in the original units. Parameters are those of
    :class:`TorchMLPClassifier`.

    Fitted attributes: ``y_mean_``, ``y_scale_`` (arrays of shape (n_targets,)),
    ``n_features_in_``, ``state_dict_``, ``architecture_``, ``loss_curve_`` (in standardised
    units), ``validation_loss_curve_``, ``n_iter_``, ``best_epoch_``, ``device_``,
    ``mixed_precision_``.
    """

    _task = "regression"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        y = np.asarray(y, dtype=np.float64)
        self.y_1d_ = y.ndim == 1
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        self.y_mean_ = y2.mean(axis=0)
        scale = y2.std(axis=0)
        self.y_scale_ = np.where(scale > 0, scale, 1.0)
        return (y2 - self.y_mean_) / self.y_scale_, int(y2.shape[1])

    def _loss(self) -> nn.Module:
        return nn.MSELoss()

    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets in original units.

        Args:
            X: array-like or sparse matrix, shape (n_rows, n_features_in_).

        Returns:
            float64 array of shape (n_rows,) (or (n_rows, n_targets) if fit on a 2-D target).

        Raises:
            sklearn.exceptions.NotFittedError: called before ``fit``.
            ValueError: wrong number of features or non-finite values.
        """
        out = self._forward(X).astype(np.float64) * self.y_scale_ + self.y_mean_
        return out[:, 0] if self.y_1d_ else out
