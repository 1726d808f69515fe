"""Tests for dripml.algorithms.torch_mlp (CPU only; GPU paths are exercised by monkeypatching
torch.cuda)."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from dripml.algorithms.torch_mlp import (
    DeviceUnavailableError,
    TorchMLPClassifier,
    TorchMLPRegressor,
    select_device,
    use_mixed_precision,
)


def _scaled_split(X: np.ndarray, y: np.ndarray, seed: int = 0):
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return _scaled_split(X, y)


@pytest.fixture(scope="module")
def fitted_cancer(cancer):
    X_tr, _, y_tr, _ = cancer
    return TorchMLPClassifier(epochs=15).fit(X_tr, y_tr)


@pytest.fixture(scope="module")
def linear_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 8))
    y = X @ rng.normal(size=8) * 30.0 + 500.0 + rng.normal(scale=1.0, size=1000)
    return X[:800], X[800:], y[:800], y[800:]


# ----------------------------------------------------------------------------- learning quality


def test_binary_classifier_accuracy(cancer, fitted_cancer):
    _, X_te, _, y_te = cancer
    assert fitted_cancer.score(X_te, y_te) > 0.9
    assert fitted_cancer.n_iter_ == 15
    assert len(fitted_cancer.loss_curve_) == 15
    assert fitted_cancer.loss_curve_[-1] < fitted_cancer.loss_curve_[0]
    assert fitted_cancer.device_ == "cpu"
    assert fitted_cancer.mixed_precision_ is False


def test_multiclass_classifier_accuracy():
    X, y = load_wine(return_X_y=True)
    X_tr, X_te, y_tr, y_te = _scaled_split(X, y)
    clf = TorchMLPClassifier(epochs=30, batch_size=32).fit(X_tr, y_tr)
    assert list(clf.classes_) == [0, 1, 2]
    assert clf.score(X_te, y_te) > 0.85
    proba = clf.predict_proba(X_te)
    assert proba.shape == (len(X_te), 3)


def test_regressor_beats_mean(linear_problem):
    X_tr, X_te, y_tr, y_te = linear_problem
    reg = TorchMLPRegressor(epochs=30).fit(X_tr, y_tr)
    pred = reg.predict(X_te)
    assert pred.shape == (len(X_te),)
    assert pred.dtype == np.float64
    assert reg.score(X_te, y_te) > 0.8
    # The target is standardised internally and the scale is undone on predict.
    assert abs(pred.mean() - y_te.mean()) < 0.2 * y_te.std()
    np.testing.assert_allclose(reg.y_mean_, [y_tr.mean()])


def test_regressor_two_dimensional_target(linear_problem):
    X_tr, X_te, y_tr, y_te = linear_problem
    Y_tr = np.column_stack([y_tr, -2.0 * y_tr])
    reg = TorchMLPRegressor(epochs=20).fit(X_tr, Y_tr)
    pred = reg.predict(X_te)
    assert pred.shape == (len(X_te), 2)
    assert reg.score(X_te, np.column_stack([y_te, -2.0 * y_te])) > 0.8


# ----------------------------------------------------------------------------- predict API


def test_predict_proba_shape_and_row_sums(cancer, fitted_cancer):
    _, X_te, _, _ = cancer
    proba = fitted_cancer.predict_proba(X_te)
    assert proba.shape == (len(X_te), 2)
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    pred = fitted_cancer.predict(X_te)
    np.testing.assert_array_equal(pred, fitted_cancer.classes_[proba.argmax(axis=1)])


def test_arbitrary_labels_round_trip():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    y = np.where(X[:, 0] > 0, "yes", "no")
    clf = TorchMLPClassifier(epochs=20, batch_size=32, learning_rate=1e-2).fit(X, y)
    assert list(clf.classes_) == ["no", "yes"]
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert clf.score(X, y) > 0.9


def test_single_row_predict_is_fast(cancer, fitted_cancer):
    _, X_te, _, _ = cancer
    row = X_te[:1]
    for _ in range(50):
        fitted_cancer.predict_proba(row)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        fitted_cancer.predict_proba(row)
        times.append(time.perf_counter() - start)
    # Typically ~0.1 ms; the bound is generous for loaded CI machines.
    assert float(np.median(times)) < 2e-3


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError):
        TorchMLPClassifier().predict(np.zeros((1, 3)))


def test_wrong_feature_count_raises(fitted_cancer):
    with pytest.raises(ValueError, match="features"):
        fitted_cancer.predict(np.zeros((2, 5)))


def test_single_class_raises():
    with pytest.raises(ValueError, match="at least 2 classes"):
        TorchMLPClassifier(epochs=1).fit(np.zeros((5, 2)), np.ones(5))


# ----------------------------------------------------------------------------- sklearn contract


def test_get_params_and_clone(fitted_cancer):
    params = fitted_cancer.get_params()
    assert params["epochs"] == 15
    assert set(params) == {
        "hidden_units",
        "num_layers",
        "dropout",
        "learning_rate",
        "weight_decay",
        "epochs",
        "batch_size",
        "device",
        "num_threads",
        "random_state",
        "validation_fraction",
        "early_stopping_patience",
        "mixed_precision",
    }
    cloned = clone(fitted_cancer)
    assert cloned.get_params() == params
    assert not hasattr(cloned, "state_dict_")
    with pytest.raises(NotFittedError):
        cloned.predict(np.zeros((1, fitted_cancer.n_features_in_)))


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        TorchMLPClassifier(64)  # type: ignore[misc]


@pytest.mark.parametrize(
    "params",
    [
        {"hidden_units": 0},
        {"num_layers": -1},
        {"dropout": 1.0},
        {"learning_rate": 0.0},
        {"weight_decay": -1.0},
        {"epochs": 0},
        {"batch_size": 0},
        {"validation_fraction": 1.0},
        {"num_threads": 0},
        {"early_stopping_patience": 2},  # without validation_fraction
        {"device": "tpu"},
    ],
)
def test_invalid_params_raise(params):
    with pytest.raises(ValueError):
        TorchMLPClassifier(**params).fit(np.zeros((10, 2)), np.arange(10) % 2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator", [TorchMLPClassifier(), TorchMLPRegressor()])
def test_sklearn_check_estimator(estimator):
    check_estimator(estimator)


# ----------------------------------------------------------------------------- pickling


def test_pickle_round_trip_identical_predictions(cancer, fitted_cancer):
    _, X_te, _, _ = cancer
    before = fitted_cancer.predict_proba(X_te)  # builds and caches the module
    blob = pickle.dumps(fitted_cancer)
    loaded = pickle.loads(blob)
    assert "_cache" not in fitted_cancer.__getstate__()
    assert all(t.device.type == "cpu" for t in loaded.state_dict_.values())
    np.testing.assert_array_equal(loaded.predict_proba(X_te), before)
    np.testing.assert_array_equal(loaded.predict(X_te), fitted_cancer.predict(X_te))


def test_cloudpickle_round_trip(linear_problem):
    cloudpickle = pytest.importorskip("cloudpickle")
    X_tr, X_te, y_tr, _ = linear_problem
    reg = TorchMLPRegressor(epochs=3).fit(X_tr, y_tr)
    loaded = cloudpickle.loads(cloudpickle.dumps(reg))
    np.testing.assert_array_equal(loaded.predict(X_te), reg.predict(X_te))


def test_gpu_configured_model_predicts_on_cpu(cancer, monkeypatch):
    """A model whose device says 'cuda' (e.g. trained on a GPU node) still loads and predicts."""
    X_tr, X_te, y_tr, _ = cancer
    clf = TorchMLPClassifier(epochs=2).fit(X_tr, y_tr)
    expected = clf.predict_proba(X_te)
    clf.set_params(device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X_te), expected)


# ----------------------------------------------------------------------------- determinism


def test_determinism_with_fixed_random_state(cancer):
    X_tr, X_te, y_tr, _ = cancer
    a = TorchMLPClassifier(epochs=3, random_state=7).fit(X_tr, y_tr)
    b = TorchMLPClassifier(epochs=3, random_state=7).fit(X_tr, y_tr)
    c = TorchMLPClassifier(epochs=3, random_state=8).fit(X_tr, y_tr)
    for key, value in a.state_dict_.items():
        assert torch.equal(value, b.state_dict_[key])
    np.testing.assert_array_equal(a.predict_proba(X_te), b.predict_proba(X_te))
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.predict_proba(X_te), c.predict_proba(X_te))


def test_fit_leaves_global_torch_state_alone(cancer):
    X_tr, _, y_tr, _ = cancer
    rng_state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    TorchMLPClassifier(epochs=1, num_threads=1).fit(X_tr, y_tr)
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    assert torch.get_num_threads() == threads


# ----------------------------------------------------------------------------- sparse input


def test_sparse_input_matches_dense(cancer):
    X_tr, X_te, y_tr, _ = cancer
    X_tr_sparse = X_tr.copy()
    X_tr_sparse[np.abs(X_tr_sparse) < 0.5] = 0.0  # make it genuinely sparse
    X_te_sparse = X_te.copy()
    X_te_sparse[np.abs(X_te_sparse) < 0.5] = 0.0
    dense = TorchMLPClassifier(epochs=3).fit(X_tr_sparse, y_tr)
    sparse = TorchMLPClassifier(epochs=3).fit(sp.csr_matrix(X_tr_sparse), y_tr)
    np.testing.assert_allclose(
        sparse.predict_proba(sp.csr_matrix(X_te_sparse)),
        dense.predict_proba(X_te_sparse),
        rtol=1e-5,
        atol=1e-6,
    )
    assert sparse.predict_proba(sp.csc_matrix(X_te_sparse)).shape == (len(X_te), 2)


def test_sparse_regressor(linear_problem):
    X_tr, X_te, y_tr, y_te = linear_problem
    reg = TorchMLPRegressor(epochs=20).fit(sp.csr_matrix(X_tr), y_tr)
    assert reg.score(sp.csr_matrix(X_te), y_te) > 0.8


# ----------------------------------------------------------------------------- early stopping


def test_early_stopping_records_validation_curve(cancer):
    X_tr, X_te, y_tr, y_te = cancer
    clf = TorchMLPClassifier(
        epochs=200, learning_rate=1e-2, validation_fraction=0.2, early_stopping_patience=3
    ).fit(X_tr, y_tr)
    assert clf.n_iter_ < 200
    assert len(clf.validation_loss_curve_) == clf.n_iter_
    assert 1 <= clf.best_epoch_ <= clf.n_iter_
    assert clf.n_iter_ - clf.best_epoch_ == 3
    assert clf.validation_loss_curve_[clf.best_epoch_ - 1] == min(clf.validation_loss_curve_)
    assert clf.score(X_te, y_te) > 0.9


def test_validation_without_early_stopping_runs_all_epochs(cancer):
    X_tr, _, y_tr, _ = cancer
    clf = TorchMLPClassifier(epochs=4, validation_fraction=0.1).fit(X_tr, y_tr)
    assert clf.n_iter_ == 4
    assert len(clf.validation_loss_curve_) == 4


def test_mixed_precision_on_cpu_uses_bf16_autocast(cancer):
    X_tr, X_te, y_tr, y_te = cancer
    clf = TorchMLPClassifier(epochs=10, mixed_precision=True).fit(X_tr, y_tr)
    assert clf.mixed_precision_ is True
    proba = clf.predict_proba(X_te)
    assert np.all(np.isfinite(proba))
    assert clf.score(X_te, y_te) > 0.85


# ----------------------------------------------------------------------------- devices


def test_select_device_cpu_and_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto") == torch.device("cpu")
    assert select_device("auto", gpus=1) == torch.device("cpu")


def test_select_device_auto_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto", gpus=1) == torch.device("cuda")
    assert select_device("auto", gpus=0.5) == torch.device("cuda")
    assert select_device("auto", gpus=0) == torch.device("cpu")
    assert select_device("cpu", gpus=1) == torch.device("cpu")


def test_select_device_explicit_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda") == torch.device("cuda")
    assert select_device("CUDA:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        select_device("cuda:2")


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_select_device_cuda_unavailable_raises(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is visible") as info:
        select_device(device, gpus=1)
    assert isinstance(info.value, DeviceUnavailableError)
    assert "cpu" in str(info.value) and "request GPUs in the spec's resources" in str(info.value)


@pytest.mark.parametrize("device", ["tpu", "mps", "gpu", "", "cpu:3"])
def test_select_device_rejects_unknown(device):
    with pytest.raises(ValueError, match="device must be"):
        select_device(device)


def test_select_device_rejects_negative_gpus():
    with pytest.raises(ValueError, match="gpus"):
        select_device("auto", gpus=-1)


def test_fit_on_cuda_without_cuda_raises(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        TorchMLPRegressor(device="cuda", epochs=1).fit(np.zeros((4, 2)), np.arange(4.0))


def test_use_mixed_precision():
    assert use_mixed_precision(torch.device("cpu"), None) is False
    assert use_mixed_precision(torch.device("cuda"), None) is True
    assert use_mixed_precision("cuda:1", None) is True
    assert use_mixed_precision("cpu", True) is True
    assert use_mixed_precision(torch.device("cuda"), False) is False
