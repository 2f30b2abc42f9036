"""Where a model's weights come from: a local folder, a folder shipped inside an
installed Python package (``pkg:package/sub/folder``), or a hub id fetched at startup."""

from __future__ import annotations

from pathlib import Path

from protocol.config import ModelConfig
from protocol.model_paths import PACKAGE_PREFIX, looks_local, package_folder

__all__ = ["local_or_hub", "package_folder"]


def local_or_hub(model: ModelConfig) -> str:
    """The path to pass to a loader; a missing *local* path fails here, clearly,
    instead of being mistaken for a hub id and downloaded."""
    path = model.path
    if path.startswith(PACKAGE_PREFIX):
        return str(package_folder(path))
    if looks_local(path):
        folder = Path(path).expanduser()
        if not folder.is_dir():
            hint = " (create the demo models with `make setup`)" if model.demo else ""
            raise FileNotFoundError(f"model folder {folder} does not exist{hint}")
        return str(folder)
    return path
