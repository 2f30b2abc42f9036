"""Where a model's folder is, from its config's ``path``, for both sides: a
local folder, a folder shipped inside an installed Python package
(``pkg:package/sub/folder``), or a Hugging Face hub id."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_PREFIX = "pkg:"


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


def looks_local(path: str) -> bool:
    """A folder on this machine rather than a hub id."""
    return path.startswith(("/", ".", "~")) or Path(path).exists()
