"""Data: read the spec's sources, check them against the task, split and encode.

Every check names the column and says what to do; nothing here starts Ray or MLflow, so bad
data fails before any compute is spent.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from dripml.core import data_checks, datasets
from dripml.core.features import Kind, TabularEncoder, identifier_note, infer_kinds
from dripml.core.preprocess import Preprocessor, RowsTransform, in_process
from dripml.core.spec import DataSpec, Spec, Task
from dripml.core.text import TextRules
from dripml.errors import DataError

logger = logging.getLogger(__name__)

MAX_CLASSES = 1000


@dataclass(frozen=True)
class Dataset:
    """Training and test rows, checked and ready for the search.

    Attributes:
        X_train, X_test: feature columns only (DataFrames, original values).
        y_train, y_test: label per row; class codes 0..K-1 (int64) for classification,
            float64 for regression. Shapes (n_train,) and (n_test,).
        classes: original class labels as strings, code i -> classes[i]; () for regression.
        encoder: fitted on X_train; maps rows to the encoded matrix. Its ``notes`` say
            what loading decided on its own (identifier columns dropped, levels merged,
            datetime columns found), for the caller to show.
        task: binary, multiclass or regression.
        preprocessor: ``data.preprocess`` fitted on the raw training rows, or None. With
            one, ``X_train`` and ``X_test`` hold what it returned (the encoder's input) and
            ``X_test_raw`` the raw test features (see :attr:`test_input`).
        choices: with several ``data.preprocess`` functions (a search dimension), one
            Dataset per reference, in the spec's order, each with its own preprocessor,
            encoder and preprocessed rows; the split, labels and raw test rows are the same
            for all. This Dataset is the first choice's. Empty otherwise (see
            :meth:`choice`).
    """

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    classes: tuple[str, ...]
    encoder: TabularEncoder
    task: Task
    label: str
    preprocessor: Preprocessor | None = None
    X_test_raw: pd.DataFrame | None = None
    choices: Mapping[str, Dataset] = field(default_factory=dict)

    def choice(self, preprocess: str | None) -> Dataset:
        """The Dataset of the ``data.preprocess`` reference ``preprocess`` (a trial's
        choice); this one for None or when the search has no such dimension.

        Raises:
            KeyError: ``preprocess`` is not one of :attr:`choices`.
        """
        if preprocess is None or not self.choices:
            return self
        if preprocess not in self.choices:
            raise KeyError(f"preprocess {preprocess!r} is not one of the spec's "
                           f"data.preprocess choices {list(self.choices)}")
        return self.choices[preprocess]

    @property
    def test_input(self) -> pd.DataFrame:
        """The test rows as a model takes them: the raw feature columns (before
        ``data.preprocess``); ``X_test`` itself without a preprocessor."""
        return self.X_test if self.X_test_raw is None else self.X_test_raw


def read_table(source: str, na_values: list[str] | None = None) -> pd.DataFrame:
    """Read one CSV or Parquet source: local path, ``s3://bucket/key`` or ``dataset://NAME/SPLIT``.

    Raises:
        DataError: the file does not exist, has an unknown format, holds no rows, or (CSV)
            its header names a column twice.
    """
    path_or_buffer, suffix_source = locate(source, read_s3=_read_s3)
    duplicates = data_checks.duplicate_headers(
        data_checks.header_names(path_or_buffer, name=suffix_source) or [], source)
    data_checks.raise_problems(duplicates)
    frame = _parse(path_or_buffer, suffix_source, na_values or [])
    if frame.empty:
        raise DataError(f"data source {source!r} holds no rows")
    return frame


def locate(source: str, *, read_s3: Callable[[str], io.BytesIO]
           ) -> tuple[Path | io.BytesIO, str]:
    """(what to read, a name whose suffix tells the format) for a local path, ``s3://`` URI
    (its bytes, as ``read_s3`` fetches them: all, or a part) or ``dataset://NAME/SPLIT``.

    Raises:
        DataError: a local file that does not exist, or an unknown data set or split.
    """
    if datasets.is_dataset_uri(source):
        path = datasets.resolve(source)
        return path, str(path)
    if source.startswith("s3://"):
        return read_s3(source), urlparse(source).path
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"data file {source!r} does not exist")
    return path, str(path)


def _parse(source: Path | io.BytesIO, name: str, na_values: list[str]) -> pd.DataFrame:
    lowered = name.lower()
    try:
        if lowered.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(source)
            if na_values:
                frame = frame.replace(na_values, np.nan)
            return frame
        if lowered.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            sep = "\t" if lowered.endswith(".tsv") else ","
            return pd.read_csv(source, na_values=na_values, sep=sep, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (ValueError, OSError) as error:
        raise DataError(f"could not read {name!r}: {error}") from None
    raise DataError(f"unknown format of {name!r}: use .csv, .csv.gz, .tsv, .parquet or .pq")


def _read_s3(uri: str) -> io.BytesIO:
    import boto3  # imported here: only S3 users pay for it
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    try:
        body = boto3.client("s3").get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        return io.BytesIO(body["Body"].read())
    except (BotoCoreError, ClientError) as error:
        raise DataError(f"could not read {uri!r} from S3: {error}") from None


def text_rules(spec: Spec, kinds: Mapping[str, str]) -> dict[str, TextRules]:
    """``data.text`` cleaning rules of each text column."""
    return {name: TextRules(**spec.data.text.rules_for(name).model_dump())
            for name, kind in kinds.items() if kind == "text"}


def load(spec: Spec, *, transform: RowsTransform = in_process) -> Dataset:
    """Read, check, split and encode the spec's data. Undeclared columns that look like row
    identifiers are left out of the features (see :func:`find_identifiers`). With
    ``data.preprocess``, it is fitted on the raw training features right after the split
    and applied to both splits before kinds are inferred (:mod:`dripml.core.preprocess`).
    With several ``data.preprocess`` references (a search dimension), the rows are read and
    split once, then each reference is fitted, checked and encoded here, before any trial:
    the first choice's Dataset holds them all in :attr:`Dataset.choices`. ``transform``
    runs each fitted step over a split (:data:`~dripml.core.preprocess.RowsTransform`; Ray
    Data's with ``data.engine: ray``, see :func:`dripml.api.connect`).

    Raises:
        DataError: a missing label or feature column (the message lists the columns found),
            an empty file, a column named twice in a CSV header, a label empty in some rows
            (how many, which), a feature column empty in every training row, infinite
            values, a column numeric in train but holding text in test (each naming the
            column and the file; see :mod:`dripml.core.data_checks`), a label that does not
            fit the task, or a class with too few rows for the folds; ``data.preprocess``
            failing or returning no DataFrame, another row count, or a column with one of
            those problems (see :func:`_preprocess`; the message names the reference).
        SpecError: ``data.preprocess`` does not import.
    """
    data = spec.data
    train = read_table(data.train, data.na_values)
    _check_columns(train, data, data.train)
    wanted = data.features or [c for c in train.columns if c != data.label]
    data_checks.raise_problems(data_checks.frame_problems(
        train, source=data.train, label=data.label, features=wanted, complete=True))
    train = _drop_unlabelled(train, data.label)
    _check_label_fits_task(train[data.label], spec)
    if data.test is not None:  # before sampling: every train row tells a numeric column
        test = read_table(data.test, data.na_values)
        _check_columns(test, data, data.test)
        data_checks.raise_problems([
            *data_checks.frame_problems(test, source=data.test, label=data.label,
                                        features=wanted, complete=True, is_train=False),
            *data_checks.drift_problems(train, test, train_source=data.train,
                                        test_source=data.test, features=wanted,
                                        declared=data.type_overrides())])
        test = _drop_unlabelled(test, data.label)
    if data.sample_rows is not None and data.sample_rows < len(train):
        train = _sample(train, data, spec.task)
    if data.test is None:
        train, test = _split(train, data, spec.task)

    features = data.features or [c for c in train.columns if c != data.label]
    labels = _encode_labels(train[data.label], test[data.label], spec)
    X_train = train[features].reset_index(drop=True)
    X_test = test[features].reset_index(drop=True)
    references = data.preprocess_choices
    if len(references) <= 1:
        dataset = _encoded(spec, data, X_train, X_test, *labels, transform=transform)
    else:  # one split, one Dataset per choice
        loaded = {ref: _encoded(spec, data.with_preprocess(ref), X_train, X_test, *labels,
                                transform=transform)
                  for ref in references}
        dataset = replace(loaded[references[0]], choices=loaded)
    _check_folds(dataset.y_train, spec)
    return dataset


def _encoded(spec: Spec, data: DataSpec, X_train: pd.DataFrame, X_test_raw: pd.DataFrame,
             y_train: np.ndarray, y_test: np.ndarray, classes: tuple[str, ...], *,
             transform: RowsTransform = in_process) -> Dataset:
    """The raw feature columns of the split through ``data.preprocess`` (one reference at
    most), identifiers left out, and the encoder fitted on the training rows."""
    preprocessor, X_test = None, X_test_raw
    if data.preprocess is not None:  # before kinds: the encoder reads what it returns
        preprocessor, X_train, X_test = _preprocess(X_train, X_test_raw, data, transform)
    overrides = data.type_overrides()
    kinds = infer_kinds(X_train, overrides)
    identifiers = find_identifiers(X_train, kinds, overrides)
    features = [c for c in X_train.columns if c not in identifiers]
    X_train = X_train[features]
    kinds = {c: kinds[c] for c in features}
    encoder = TabularEncoder(text_rules(spec, kinds)).fit(
        X_train, kinds, notes=tuple(identifiers.values()))
    return Dataset(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test[features],
        y_test=y_test,
        classes=classes,
        encoder=encoder,
        task=spec.task,
        label=data.label,
        preprocessor=preprocessor,
        X_test_raw=X_test_raw if preprocessor is not None else None,
    )


def _preprocess(X_train: pd.DataFrame, X_test: pd.DataFrame, data: DataSpec,
                transform: RowsTransform = in_process
                ) -> tuple[Preprocessor, pd.DataFrame, pd.DataFrame]:
    """``data.preprocess`` fitted on the raw training features, and both splits through it.

    Raises:
        SpecError: the reference does not load.
        DataError: the step failed or returned no DataFrame or another row count, it returned
            a column named twice, or its output has a problem of the data checks (an empty
            column, infinite values), or lacks a column ``column_types`` or ``text_columns``
            names.
    """
    test_source = data.test or f"the test split of {data.train}"
    declared = {c: k for c, k in data.type_overrides().items() if c in X_train.columns}
    preprocessor, train_out = Preprocessor.fit(data.preprocess or "", X_train,
                                               source=repr(data.train), kinds=declared,
                                               transform=transform)
    test_out = transform(preprocessor, X_test, repr(test_source))
    output = f"data.preprocess {data.preprocess!r} output on {data.train!r}"
    twice = sorted({str(c) for c in train_out.columns if list(train_out.columns).count(c) > 1})
    if twice:
        raise DataError(f"{output} names columns {twice} twice; return each column once")
    missing = sorted(set(data.type_overrides()) - set(map(str, train_out.columns)))
    if missing:
        raise DataError(f"columns {missing} named in data.column_types or data.text_columns "
                        f"are not in the {output}; it returns {list(train_out.columns)[:20]}")
    if list(test_out.columns) != list(train_out.columns):
        raise DataError(f"data.preprocess {data.preprocess!r} returned columns "
                        f"{list(test_out.columns)[:20]} on {test_source!r} but "
                        f"{list(train_out.columns)[:20]} on {data.train!r}; return the same "
                        "columns for every row set")
    data_checks.raise_problems(data_checks.frame_problems(
        train_out, source=output, label=data.label, features=list(train_out.columns),
        complete=True))
    return preprocessor, train_out.reset_index(drop=True), test_out.reset_index(drop=True)


def find_identifiers(frame: pd.DataFrame, kinds: Mapping[str, Kind],
                     declared: Mapping[str, str]) -> dict[str, str]:
    """Undeclared numeric or categorical columns that look like row identifiers (see
    :func:`~dripml.core.features.identifier_note`), each with its note, logged as a warning.

    An identifier only tells training rows apart: a model fits it and learns nothing that
    carries to new rows, so it is left out unless ``data.column_types`` declares it.
    """
    found = {}
    for name in frame.columns:
        if name in declared or kinds[name] not in ("numeric", "categorical"):
            continue
        note = identifier_note(frame[name], name)
        if note is not None:
            logger.warning(note)
            found[name] = note
    return found


def _check_columns(frame: pd.DataFrame, data: DataSpec, source: str) -> None:
    columns = list(frame.columns)
    if data.label not in columns:
        raise DataError(
            f"label column {data.label!r} is not in {source!r}; columns found: {columns}"
        )
    wanted = set(data.features or [])
    if data.preprocess is None:  # else they name columns the preprocessing returns
        wanted |= set(data.column_types) | set(data.text_columns)
    missing = sorted(wanted - set(columns))
    if missing:
        raise DataError(f"columns {missing} named in the spec are not in {source!r}; "
                        f"columns found: {columns}")


def _drop_unlabelled(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    kept = frame[frame[label].notna()]
    if kept.empty:
        raise DataError(f"label column {label!r} holds no values")
    return kept


def _sample(train: pd.DataFrame, data: DataSpec, task: Task) -> pd.DataFrame:
    stratify = train[data.label] if task != "regression" else None
    try:
        sample, _ = train_test_split(train, train_size=data.sample_rows,
                                     random_state=data.seed, stratify=stratify)
    except ValueError:
        sample = train.sample(n=data.sample_rows, random_state=data.seed)
    return sample


def _split(train: pd.DataFrame, data: DataSpec, task: Task) -> tuple[pd.DataFrame, pd.DataFrame]:
    stratify = train[data.label] if task != "regression" else None
    try:
        return tuple(train_test_split(train, test_size=data.effective_test_fraction,
                                      random_state=data.seed, stratify=stratify))
    except ValueError as error:
        raise DataError(f"could not split off the test set by label {data.label!r}: "
                        f"{str(error)[:300]}; give a test file or more rows per class") from None


def _encode_labels(
    y_train: pd.Series, y_test: pd.Series, spec: Spec
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    label = spec.data.label
    if spec.task == "regression":
        for name, series in (("train", y_train), ("test", y_test)):
            values = pd.to_numeric(series, errors="coerce")
            if values.isna().any():
                bad = series[values.isna()].iloc[0]
                raise DataError(f"task regression needs a numeric label, but column {label!r} "
                                f"({name}) holds {bad!r}; use task binary or multiclass")
        return (y_train.astype(float).to_numpy(), y_test.astype(float).to_numpy(), ())

    train_text = y_train.astype(str)
    classes = tuple(sorted(train_text.unique()))
    codes = {c: i for i, c in enumerate(classes)}
    test_text = y_test.astype(str)
    unseen = sorted(set(test_text) - set(classes))
    if unseen:
        raise DataError(f"the test split of label {label!r} holds classes never seen in "
                        f"training: {unseen[:10]}")
    return (train_text.map(codes).to_numpy(dtype=np.int64),
            test_text.map(codes).to_numpy(dtype=np.int64), classes)


TEXT_MIN_WORDS = 3.0
"""Mean words per value from which a mostly-unique string column is free text."""


def infer_text_columns(frame: pd.DataFrame, sample: int = 1000) -> list[str]:
    """String columns that hold free text: on a sample of up to ``sample`` non-null values,
    at least ``TEXT_MIN_WORDS`` words per value on average and at least half of them
    distinct (a categorical repeats a few short values; an identifier has one word)."""
    found = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        values = column.dropna().astype(str).head(sample)
        if len(values) == 0:
            continue
        words = values.str.split().str.len().mean()
        if words >= TEXT_MIN_WORDS and values.nunique() >= 0.5 * len(values):
            found.append(str(name))
    return found


def stage_frame(frame: pd.DataFrame, folder: Path) -> str:
    """Write ``frame`` once as Parquet under ``folder``, named by its content's SHA-256
    (the same rows give the same file, which a rerun reads); returns the absolute path.

    Raises:
        DataError: the frame is empty or cannot be written as Parquet (the message says
            which column).
    """
    import hashlib

    if frame.empty:
        raise DataError("the DataFrame holds no rows")
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except (ValueError, TypeError, ImportError) as error:
        raise DataError(f"the DataFrame cannot be written as Parquet: {error}") from error
    payload = buffer.getvalue()
    path = folder / f"{hashlib.sha256(payload).hexdigest()[:16]}.parquet"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(payload)
        partial.replace(path)  # atomic: a killed write leaves no half file
    return str(path.resolve())


MULTICLASS_MAX_INTEGERS = 20
"""A numeric label of whole numbers with at most this many values is a class label."""


def infer_task(y: pd.Series, label: str) -> tuple[Task, str]:
    """The task a label column asks for, and one line saying why (AutoGluon's rule).

    Two distinct values: binary. Text, booleans and categories with more: multiclass.
    Numbers: multiclass when they are whole numbers with at most
    ``MULTICLASS_MAX_INTEGERS`` values, else regression.

    Raises:
        DataError: the label has fewer than two distinct values.
    """
    values = y.dropna()
    distinct = values.unique()
    n = len(distinct)
    shown = ", ".join(map(str, sorted(map(str, distinct))[:5])) + (", ..." if n > 5 else "")
    if n < 2:
        raise DataError(f"label {label!r} has {n} distinct value(s) ({shown}); a model needs "
                        "at least two")
    if n == 2:
        return "binary", f"task: binary (label {label!r} has 2 values: {shown})"
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric:
        return "multiclass", f"task: multiclass (label {label!r} has {n} classes: {shown})"
    whole = bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1) == 0))
    if whole and n <= MULTICLASS_MAX_INTEGERS:
        return "multiclass", (f"task: multiclass (label {label!r} has {n} whole-number "
                              f"values: {shown}; pass task='regression' to predict a number)")
    return "regression", (f"task: regression (label {label!r} is numeric with {n:,} distinct "
                          "values)")


def _check_label_fits_task(y: pd.Series, spec: Spec) -> None:
    """Fail on a label that does not fit the task, before any split or sample."""
    label = spec.data.label
    if spec.task == "regression":
        values = pd.to_numeric(y, errors="coerce")
        if values.isna().any():
            bad = y[values.isna()].iloc[0]
            raise DataError(f"task regression needs a numeric label, but column {label!r} "
                            f"holds {bad!r}; use task binary or multiclass")
        return
    classes = sorted(y.astype(str).unique())
    n = len(classes)
    if spec.task == "binary" and n != 2:
        raise DataError(f"task binary needs exactly 2 classes in label {label!r}, found {n}: "
                        f"{classes[:10]}; use task {'multiclass' if n > 2 else 'regression'}")
    if spec.task == "multiclass":
        if n < 3:
            raise DataError(f"task multiclass needs at least 3 classes in label {label!r}, "
                            f"found {n}: {classes}; use task binary")
        if n > MAX_CLASSES or (pd.api.types.is_float_dtype(y) and n > 0.5 * len(y)):
            raise DataError(f"label {label!r} has {n} distinct values, which looks continuous; "
                            "use task regression")


def _check_folds(y_train: np.ndarray, spec: Spec) -> None:
    n_splits = spec.k_fold.n_splits
    if len(y_train) < n_splits:
        raise DataError(f"{len(y_train)} training rows cannot fill {n_splits} folds")
    if spec.task != "regression" and spec.stratified:
        counts = np.bincount(y_train)
        if counts.min() < n_splits:
            raise DataError(f"a class of label {spec.data.label!r} has {counts.min()} rows, "
                            f"fewer than k_fold.n_splits={n_splits}; lower n_splits or add rows")
