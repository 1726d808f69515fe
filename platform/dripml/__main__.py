"""``python -m dripml ...`` runs the ``drip`` command (what the web page's run queue starts:
the same interpreter as the UI, whatever ``drip`` on PATH is)."""

from dripml.cli import app

if __name__ == "__main__":
    app(prog_name="drip")
