"""Uploaded data files: stored as ``<data dir>/uploads/<id>.<csv|parquet>`` under an id the
server makes (uuid4 hex), never a name or path from the request; checked before use."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dripml.errors import DataError

EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CHUNK_BYTES = 1024 * 1024
PREVIEW_ROWS = 5
_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadError(DataError):
    """A bad upload; ``status`` is the HTTP status to answer (400, 404, 413 or 415)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadInfo:
    """A stored upload: its id, file, column names and the first rows (JSON-ready)."""

    id: str
    path: Path
    columns: list[str]
    rows_preview: list[dict[str, Any]] = field(default_factory=list)
    filename: str = ""


class Uploads:
    """The upload folder.

    Args:
        folder: where uploads go (created when needed).
        max_bytes: the largest file, bytes.
    """

    def __init__(self, folder: Path, *, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    def save(self, stream: BinaryIO, filename: str) -> UploadInfo:
        """Copy ``stream`` in chunks to a new upload and check it is a readable table.

        Args:
            stream: the file's bytes (read in 1 MiB chunks; never more than the limit).
            filename: the name the browser gave, for its extension only.

        Raises:
            UploadError: 415 not ``.csv``/``.parquet``; 413 too large; 400 empty, unreadable,
                no header or no rows (the message says which). Nothing is kept then.
        """
        name = Path(filename or "").name
        kind = EXTENSIONS.get(Path(name).suffix.lower())
        if kind is None:
            raise UploadError(f"file: {name or 'the upload'!r} is not a CSV or Parquet file; "
                              f"upload a .csv or .parquet file", status=415)
        self.folder.mkdir(parents=True, exist_ok=True)
        upload_id = uuid.uuid4().hex
        path = self.folder / f"{upload_id}.{kind}"
        size = 0
        try:
            with path.open("wb") as out:
                while chunk := stream.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadError(
                            f"file: {name!r} is larger than the upload limit of "
                            f"{self.max_bytes / 2**20:g} MiB (drip ui --max-upload-mib)",
                            status=413)
                    out.write(chunk)
            if size == 0:
                raise UploadError(f"file: {name!r} is empty; upload a file with a header "
                                  f"line and data rows")
            columns, preview = inspect(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        path.with_suffix(".json").write_text(json.dumps({"filename": name}))
        return UploadInfo(upload_id, path, columns, preview, name)

    def get(self, upload_id: str) -> UploadInfo:
        """A stored upload by id.

        Raises:
            UploadError: 400 not an upload id; 404 no such upload.
        """
        if not _ID.match(upload_id or ""):
            raise UploadError(f"upload_id: {upload_id!r} is not an upload id (32 hex digits "
                              f"from POST /api/uploads)")
        for kind in ("csv", "parquet"):
            path = self.folder / f"{upload_id}.{kind}"
            if path.is_file():
                columns, preview = inspect(path)
                meta = path.with_suffix(".json")
                filename = json.loads(meta.read_text()).get("filename", "") \
                    if meta.is_file() else ""
                return UploadInfo(upload_id, path, columns, preview, filename)
        raise UploadError(f"upload_id: no upload {upload_id!r}; upload the file again",
                          status=404)


def inspect(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The column names and first rows of a CSV or Parquet file.

    Raises:
        UploadError: (400) unreadable, no header, or no data rows.
    """
    import pandas as pd

    name = "file"
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            rows = parquet.metadata.num_rows
            frame = (next(parquet.iter_batches(batch_size=PREVIEW_ROWS)).to_pandas()
                     if rows else pd.DataFrame(columns=parquet.schema_arrow.names))
        else:
            frame = pd.read_csv(path, nrows=max(PREVIEW_ROWS, 50))
            rows = len(frame)
    except UnicodeDecodeError:
        raise UploadError(f"{name}: not a text CSV file (its bytes are not UTF-8 text); "
                          f"upload a CSV or Parquet file") from None
    except pd.errors.EmptyDataError:
        raise UploadError(f"{name}: the file has no header line and no rows") from None
    except Exception as error:  # pandas/pyarrow parser errors: the file is not a table
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UploadError(f"{name}: cannot be read as a {path.suffix[1:].upper()} table "
                          f"({first[:200]})") from None
    columns = [str(c) for c in frame.columns]
    if not columns:
        raise UploadError(f"{name}: the file has no columns")
    if path.suffix == ".csv" and _headerless(columns):
        raise UploadError(f"{name}: the first line looks like data, not a header "
                          f"({', '.join(columns[:5])}); add a header line naming the columns")
    if any(c.startswith("Unnamed: ") for c in columns):
        raise UploadError(f"{name}: the header has empty column names ("
                          f"{', '.join(c for c in columns if c.startswith('Unnamed: '))})")
    if rows == 0:
        raise UploadError(f"{name}: the file has a header but no data rows")
    preview = json.loads(frame.head(PREVIEW_ROWS).to_json(orient="records"))
    return columns, preview


def _headerless(columns: list[str]) -> bool:
    def number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    return all(number(c.split(".")[0] if c.count(".") > 1 else c) for c in columns)


def example_record(path: Path, *, drop: str | None) -> dict[str, Any]:
    """The upload's first row as JSON-ready values, without the ``drop`` column."""
    import pandas as pd

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        frame = next(pq.ParquetFile(path).iter_batches(batch_size=1)).to_pandas()
    else:
        frame = pd.read_csv(path, nrows=1)
    if drop in frame.columns:
        frame = frame.drop(columns=[drop])
    records = json.loads(frame.head(1).to_json(orient="records"))
    return records[0] if records else {}
