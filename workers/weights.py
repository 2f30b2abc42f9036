"""Where a model's weights come from: a local folder, a folder shipped inside an
installed Python package (``pkg:package/sub/folder``), or a hub id fetched at startup."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from protocol.config import ModelConfig

PACKAGE_PREFIX = "pkg:"


def local_or_hub(model: ModelConfig) -> str:
    """The path to pass to a loader; a missing *local* path fails here, clearly,
    instead of being mistaken for a hub id and downloaded."""
    path = model.path
    if path.startswith(PACKAGE_PREFIX):
        return str(package_folder(path))
    looks_local = path.startswith(("/", ".", "~")) or Path(path).exists()
    if looks_local:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            hint = " (create the demo models with `make setup`)" if model.demo else ""
            raise FileNotFoundError(f"model folder {folder} does not exist{hint}")
        return str(folder)
    return path


def package_folder(path: str) -> Path:
    """``pkg:package/sub/folder``: that folder of an installed package, found
    without importing the package (its import may be slow or have effects)."""
    package, _, inner = path.removeprefix(PACKAGE_PREFIX).partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model path {path!r}: no installed Python package {package!r}")
    folder = Path(next(iter(spec.submodule_search_locations))) / inner
    if not folder.is_dir():
        raise FileNotFoundError(f"model path {path!r}: {folder} does not exist")
    return folder
