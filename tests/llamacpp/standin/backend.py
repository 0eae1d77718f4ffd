"""A minimal PEP 517 backend: one pure-Python wheel holding ``standin/`` plus the build environment it saw."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from pathlib import Path

HERE = Path(__file__).parent


def _version() -> str:
    text = (HERE / "standin" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def get_requires_for_build_wheel(config_settings=None):  # noqa: ANN001, ANN201
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: ANN001, ANN201
    version = _version()
    name = f"standin_engine-{version}-py3-none-any.whl"
    dist_info = f"standin_engine-{version}.dist-info"
    files = {
        "standin/__init__.py": (HERE / "standin" / "__init__.py").read_bytes(),
        "standin/_build.py": (
            f"CMAKE_ARGS = {os.environ.get('CMAKE_ARGS', '')!r}\nCFLAGS = {os.environ.get('CFLAGS', '')!r}\n"
        ).encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: standin-engine\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: standin\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return name
