"""The driver's import path, handed to the processes dripml starts.

Custom algorithms and metrics are named ``package.module:name``; Ray workers and the memory
meter's child process must import them exactly as the driver does, so they get the driver's
working directory and ``sys.path`` as ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def driver_import_path() -> str:
    """The driver's import path as PYTHONPATH, so custom algorithms and metrics given as
    ``package.module:name`` import in embedded workers exactly as they do in the driver."""
    entries = [str(Path(p).resolve()) for p in [os.getcwd(), *sys.path] if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(entries))
