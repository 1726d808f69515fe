"""dripml.frame: user functions from the supported pandas subset give pandas' results on the
row layout (property tests over random frames and random functions), records in equal frames
in, unsupported operations fall back to pandas (logged once, counted), and the bandit picks
the faster layout."""

from __future__ import annotations

import logging
import math
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripml import frame
from dripml.frame import dispatch, fallback

Func = Callable[[Any], Any]
# pandas warns on NaN from np.sqrt/np.log of random data; the row layout, like its results,
# stays quiet
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# -- random frames ------------------------------------------------------------------------
FLOATS = st.one_of(st.just(math.nan), st.sampled_from([0.0, -1.5, 2.0, 0.5]),
                   st.floats(-1e3, 1e3, allow_nan=False))
INTS = st.integers(-5, 9)
TEXTS = st.one_of(st.none(), st.sampled_from(["", " Ab ", "http://x.co/a b", "@bob hi",
                                              "#Tag", "é Ü", "a\x0bb", "ab\n"]),
                  st.text(alphabet="aAbB @#:/.x1 é", max_size=12))
DATES = st.one_of(st.none(), st.datetimes(min_value=pd.Timestamp("1960-01-01").to_pydatetime(),
                                          max_value=pd.Timestamp("2040-01-01").to_pydatetime()))


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 6))
    return pd.DataFrame({
        "f": np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float64),
        "g": np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float64),
        "i": np.array(draw(st.lists(INTS, min_size=n, max_size=n)), dtype=np.int64),
        "s": pd.Series(draw(st.lists(TEXTS, min_size=n, max_size=n)), dtype="str"),
        "d": pd.Series(np.array(draw(st.lists(DATES, min_size=n, max_size=n)),
                                dtype="datetime64[ns]")),
    }, index=pd.RangeIndex(10, 10 + n))


# -- random functions: a column, a chain of same-kind steps, a final step -------------------
NUMERIC_STEPS: dict[str, Func] = {
    "+1": lambda s: s + 1, "*2.5": lambda s: s * 2.5, "neg": lambda s: -s, "abs": abs,
    "rsub": lambda s: 3 - s, "/g": lambda s: s / 2, "//2": lambda s: s // 2,
    "%3": lambda s: s % 3, "**2": lambda s: s ** 2, "log1p": lambda s: np.log1p(s.abs()),
    "sqrt": lambda s: np.sqrt(s), "exp": lambda s: np.exp(s.clip(-5, 5)),
    "max0": lambda s: np.maximum(s, 0), "clip": lambda s: s.clip(-1, 3),
    "round": lambda s: s.round(1),
    "fillna": lambda s: s.fillna(0), "where": lambda s: s.where(s > 0),
    "where0": lambda s: s.where(s > 0, 0), "mask": lambda s: s.mask(s < 1, -1),
    "np.where": lambda s: np.where(s > 1, s, 0.5), "replace": lambda s: s.replace({1: 10}),
    "replace.5": lambda s: s.replace([2, 3], 2.5), "map": lambda s: s.map(lambda x: x * 2),
    "apply": lambda s: s.apply(lambda x: x - 1), "astype": lambda s: s.astype(float),
}
TEXT_STEPS: dict[str, Func] = {
    "lower": lambda s: s.str.lower(), "upper": lambda s: s.str.upper(),
    "strip": lambda s: s.str.strip(), "rstrip/": lambda s: s.str.rstrip("/ "),
    "url": lambda s: s.str.replace(r"https?://\S+", " ", regex=True),
    "handles": lambda s: s.str.replace(r"[@#]\w+", "", regex=True),
    "literal": lambda s: s.str.replace("a", "o"), "slice": lambda s: s.str.slice(1, 4),
    "fillna": lambda s: s.fillna("?"), "concat": lambda s: s + "_",
    "where": lambda s: s.where(s.str.startswith("a"), "zz"),
    "map": lambda s: s.map({"#Tag": "tag", "": "empty"}),
    "get0": lambda s: s.str.split().str.get(0),
}
DATE_STEPS: dict[str, Func] = {
    "year": lambda s: s.dt.year, "month": lambda s: s.dt.month, "day": lambda s: s.dt.day,
    "dow": lambda s: s.dt.day_of_week, "hour": lambda s: s.dt.hour,
    "after": lambda s: s > pd.Timestamp("2000-01-01"),
}
FINAL_STEPS: dict[str, Func] = {
    "same": lambda s: s, "isna": lambda s: s.isna(), "notna": lambda s: s.notna(),
    ">1": lambda s: s > 1, "==2": lambda s: s == 2, "between": lambda s: s.between(0, 2),
    "isin": lambda s: s.isin([0, 1, 2.0, math.nan]), "str": lambda s: s.astype(str),
    "int": lambda s: s.astype(int), "bool": lambda s: s.astype(bool),
    "and": lambda s: (s > 0) & (s < 5) | ~(s == 1), "map": lambda s: s.map({1: "one", 2: "two"}),
}
TEXT_FINAL_STEPS: dict[str, Func] = {
    "same": lambda s: s, "len": lambda s: s.str.len(), "isna": lambda s: s.isna(),
    "contains": lambda s: s.str.contains("b"), "icontains": lambda s: s.str.contains(
        "A.", case=False), "literal": lambda s: s.str.contains(".", regex=False),
    "starts": lambda s: s.str.startswith(("a", "#")), "ends": lambda s: s.str.endswith("b"),
    "==": lambda s: s == "ab", "<": lambda s: s < "b", "isin": lambda s: s.isin(["ab", ""]),
    "words": lambda s: s.str.split().str.len(), "count": lambda s: s.str.count(r"\S+"),
    "map": lambda s: s.map({"ab": 1, "": 2}),
    "astype": lambda s: s.astype(str), "get": lambda s: s.str.get(0),
}


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, Func]:
    """A random expression over the frame: (its description, df -> Series)."""
    column = draw(st.sampled_from(["f", "g", "i", "s", "d", "apply", "apply-mixed"]))
    if column == "apply":  # numeric rows (one dtype) or mixed rows (Python objects)
        return "apply(axis=1)", lambda df: df[["f", "g", "i"]].apply(
            lambda r: r["f"] * 2 + r["i"] if r["i"] > 0 else r["g"], axis=1)
    if column == "apply-mixed":
        return "apply-mixed", lambda df: df[["i", "s"]].apply(
            lambda r: str(r["s"])[:2] + str(r["i"]), axis=1)
    if column == "d":
        name = draw(st.sampled_from(sorted(DATE_STEPS)))
        return f"d.{name}", lambda df: DATE_STEPS[name](df["d"])
    steps, finals = ((TEXT_STEPS, TEXT_FINAL_STEPS) if column == "s"
                     else (NUMERIC_STEPS, FINAL_STEPS))
    chain = draw(st.lists(st.sampled_from(sorted(steps)), max_size=3))
    final = draw(st.sampled_from(sorted(finals)))

    def expression(df: Any) -> Any:
        series = df[column]
        for name in chain:
            series = steps[name](series)
        return finals[final](series)

    return f"{column}.{'.'.join(chain)}.{final}", expression


@st.composite
def functions(draw: st.DrawFn) -> tuple[str, Func]:
    """A random user function: new columns from expressions, then frame-level steps."""
    exprs = draw(st.lists(expressions(), min_size=1, max_size=4))
    binary = draw(st.sampled_from(["none", "f+i", "f*g", "i/i", "f>g", "s+s"]))
    tail = draw(st.sampled_from(["none", "drop", "rename", "select", "assign"]))

    def func(df: Any) -> Any:
        for k, (_, expression) in enumerate(exprs):
            df[f"c{k}"] = expression(df)
        if binary != "none":
            df["b"] = {"f+i": lambda: df["f"] + df["i"], "f*g": lambda: df["f"] * df["g"],
                       "i/i": lambda: df["i"] / (df["i"] + 10), "f>g": lambda: df["f"] > df["g"],
                       "s+s": lambda: df["s"] + df["s"]}[binary]()
        df["k"] = 1
        if tail == "drop":
            return df.drop(columns=["g", "d"])
        if tail == "rename":
            return df.rename(columns={"f": "F", "c0": "first"})
        if tail == "select":
            return df[["c0", "f", "s"]]
        if tail == "assign":
            return df.assign(z=lambda d: d["i"] * 2, t="x")
        return df

    description = "; ".join(d for d, _ in exprs) + f"; {binary}; {tail}"
    return description, func


# -- comparing results --------------------------------------------------------------------
def kind(series: pd.Series) -> str:
    if series.dtype == "str" or series.dtype == object:
        return "text-or-object"
    return {"u": "i"}.get(series.dtype.kind, series.dtype.kind)


def assert_same_frame(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert got.index.equals(want.index)
    for name in want.columns:
        g, w = got[name], want[name]
        assert kind(g) == kind(w), (name, g.dtype, w.dtype)
        assert_same_values(g.tolist(), w.tolist(), name)


def assert_same_values(got: list[Any], want: list[Any], name: str) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if isinstance(w, list) or isinstance(g, list):
            assert g == w, (name, got, want)
        elif pd.isna(w):
            assert pd.isna(g), (name, got, want)
        elif isinstance(w, float):
            assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12) or g == w, (name, got, want)
        else:
            assert g == w and type(g) is type(w) or g == w, (name, got, want)


def outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", run()
    except Exception as error:  # compared by type: both layouts must fail alike
        return "error", type(error)


# -- the properties -----------------------------------------------------------------------
@SETTINGS
@given(data=frames(), function=functions())
def test_row_layout_gives_pandas_results(data: pd.DataFrame, function: tuple[str, Func]
                                         ) -> None:
    description, func = function
    want = outcome(lambda: frame.call(func, data, layout="pandas"))
    got = outcome(lambda: frame.call(func, data, layout="rows"))
    assert got[0] == want[0], (description, got, want)
    if want[0] == "ok":
        assert_same_frame(got[1], want[1])
    else:
        assert got[1] is want[1], description


@SETTINGS
@given(data=frames(), function=functions(), complete_first=st.booleans(),
       missing_as=st.sampled_from([None, math.nan]))
def test_records_give_the_same_rows_on_both_layouts(data: pd.DataFrame,
                                                    function: tuple[str, Func],
                                                    complete_first: bool,
                                                    missing_as: Any) -> None:
    description, func = function
    no_dates = lambda df: func(df.assign(d=pd.Timestamp("2020-01-01")))  # noqa: E731
    # without a complete first row, columns of missing values only come up (an object column
    # of None in pandas, or float64 with NaN)
    first = [{"f": 1.0, "g": 2.5, "i": 1, "s": "ab"}] if complete_first else []
    records = first + [
        {k: (missing_as if pd.isna(v) else v) for k, v in row.items()}
        for row in data.drop(columns=["d"]).to_dict(orient="records")]
    want = outcome(lambda: frame.call_records(no_dates, records, layout="pandas"))
    got = outcome(lambda: frame.call_records(no_dates, records, layout="rows"))
    assert got[0] == want[0], (description, got, want)
    if want[0] != "ok":
        return
    assert [list(r) for r in got[1]] == [list(r) for r in want[1]]
    for g, w in zip(got[1], want[1], strict=True):
        for name in w:
            assert_same_values([g[name]], [w[name]], name)
            assert type(g[name]) is type(w[name]), (name, g[name], w[name])


def test_a_field_missing_in_every_record_is_an_object_column_of_none() -> None:
    def features(df: Any) -> Any:
        df["work"] = df["workclass"].fillna("unknown")
        df["private"] = df["workclass"] == "Private"
        df["public"] = df["workclass"].isin(["State-gov", "Federal-gov"])
        df["other"] = df["workclass"] != "Private"
        df["gain"] = df["gain"].fillna(0.0) * 2
        return df

    records = [{"workclass": None, "gain": None}, {"workclass": None, "gain": 5}]
    fallback.reset()
    got = frame.call_records(features, records, layout="rows")
    assert got == frame.call_records(features, records, layout="pandas")
    assert got[0] == {"workclass": None, "gain": 0.0, "work": "unknown", "private": False,
                      "public": False, "other": True}
    assert frame.fallback_counts() == {}


def test_call_records_equals_call_on_the_same_rows() -> None:
    def features(df: Any) -> Any:
        df["ratio"] = df["a"] / df["b"]
        df["word"] = df["s"].str.strip().str.lower()
        return df

    records = [{"a": 1.5, "b": 2, "s": " Hi "}, {"a": None, "b": 4, "s": None}]
    by_records = frame.call_records(features, records, layout="rows")
    by_frame = frame.call(features, pd.DataFrame(records), layout="pandas")
    assert by_records == [{k: (None if pd.isna(v) else v) for k, v in row.items()}
                          for row in by_frame.to_dict(orient="records")]
    assert by_records[0]["ratio"] == 0.75 and by_records[1]["word"] is None


# -- fallback ----------------------------------------------------------------------------
def ranked(df: Any) -> Any:
    df["r"] = df["a"].rank()  # not in the row layout's subset
    df["x"] = df["a"] * 2
    return df


def test_unsupported_op_falls_back_to_pandas_logs_once_and_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    fallback.reset()
    data = pd.DataFrame({"a": [3.0, 1.0, 2.0]})
    with caplog.at_level(logging.INFO, logger="dripml.frame"):
        first = frame.call(ranked, data, layout="rows")
        second = frame.call_records(ranked, [{"a": 3.0}], layout="rows")
    pd.testing.assert_frame_equal(first, ranked(data.copy()))
    assert second == [{"a": 3.0, "r": 1.0, "x": 6.0}]
    assert frame.fallback_counts() == {"Series.rank": 2}
    lines = [r for r in caplog.records if "Series.rank" in r.getMessage()]
    assert len(lines) == 1 and "ranked" in lines[0].getMessage()


def test_unsupported_dtype_and_pandas_errors() -> None:
    fallback.reset()
    data = pd.DataFrame({"c": pd.Categorical(["a", "b"])})
    untouched = frame.call(lambda df: df.assign(n=1), data, layout="rows")
    assert untouched["c"].dtype == "category" and frame.fallback_counts() == {}
    read = frame.call(lambda df: df.assign(a=df["c"] == "a"), data, layout="rows")
    assert read["c"].dtype == "category" and read["a"].tolist() == [True, False]
    assert frame.fallback_counts() == {"a column of dtype category": 1}
    with pytest.raises(KeyError):
        frame.call_records(lambda df: df.assign(x=df["missing"]), [{"a": 1}], layout="rows")
    with pytest.raises(ValueError, match="layout must be one of"):
        frame.call(lambda df: df, data, layout="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must return a DataFrame"):
        frame.call_records(lambda df: df["a"], [{"a": 1}], layout="rows")
    assert frame.fallback_counts() == {"a column of dtype category": 1}  # no rerun for these


# -- choosing the layout -----------------------------------------------------------------
def test_auto_chooses_by_row_count() -> None:
    assert dispatch.by_rows(1) == "rows"
    assert dispatch.by_rows(dispatch.ROWS_MAX_ROWS) == "rows"
    assert dispatch.by_rows(dispatch.ROWS_MAX_ROWS + 1) == "pandas"
    assert dispatch.by_rows(0) == "pandas"
    seen: list[str] = []

    def spy(df: Any) -> Any:
        seen.append(type(df).__name__)
        return df

    frame.call_records(spy, [{"a": 1}])
    frame.call(spy, pd.DataFrame({"a": range(dispatch.ROWS_MAX_ROWS + 1)}))
    assert seen == ["RowFrame", "DataFrame"]


def test_bandit_picks_the_faster_layout_from_measured_times() -> None:
    bandit = dispatch.LayoutBandit(epsilon=0.0, warmup=2, rng=random.Random(0))
    key, bucket = "f", 0
    tried = []
    for _ in range(4):  # warm-up: each layout twice, rows first
        layout = bandit.choose(key, bucket)
        tried.append(layout)
        bandit.record(key, bucket, layout, 0.001 if layout == "rows" else 0.010)
    assert tried == ["rows", "rows", "pandas", "pandas"]
    assert bandit.choose(key, bucket) == "rows"
    for _ in range(4):  # rows slows down (bigger data in the same bucket): pandas wins
        bandit.record(key, bucket, "rows", 0.1)
    assert bandit.choose(key, bucket) == "pandas"
    assert bandit.choose(key, 5) == "rows"  # another bucket starts its own warm-up


def test_bandit_explores_with_probability_epsilon() -> None:
    bandit = dispatch.LayoutBandit(epsilon=0.5, warmup=1, rng=random.Random(1))
    bandit.record("f", 0, "rows", 0.001)
    bandit.record("f", 0, "pandas", 0.010)
    picks = [bandit.choose("f", 0) for _ in range(200)]
    assert 60 < picks.count("pandas") < 140


def test_measured_layout_records_every_call() -> None:
    def double(df: Any) -> Any:
        df["y"] = df["x"] * 2
        return df

    key = dispatch.function_key(double)
    for _ in range(2 * dispatch.BANDIT.warmup):
        assert frame.call_records(double, [{"x": 2}], layout="measured") == [{"x": 2, "y": 4}]
    assert dispatch.BANDIT.mean_s(key, 0, "rows") < math.inf
    assert dispatch.BANDIT.mean_s(key, 0, "pandas") < math.inf


def test_the_serving_path_runs_without_pyarrow() -> None:
    """The serving image installs no pyarrow: the model's code path and dripml.frame import
    without it, and non-ASCII text methods then give pandas' Python-backed results."""
    script = textwrap.dedent('''
        import sys
        sys.modules["pyarrow"] = None  # as if not installed: importing it raises
        import pandas as pd
        import dripml.core.model, dripml.core.preprocess
        from dripml import frame

        def clean(df):
            df["t"] = df["t"].str.strip().str.lower().str.upper()
            return df

        records = [{"t": " École\\u2003"}, {"t": None}, {"t": "ǅ x "}]
        got = frame.call_records(clean, records, layout="rows")
        expected = frame.call_records(clean, records, layout="pandas")
        assert got == expected, (got, expected)
        assert "pyarrow" not in {m.split(".")[0] for m, v in sys.modules.items() if v}
        print("ok")
    ''')
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
