"""A stand-in engine: ``run()`` generates "ok", or dies by SIGILL when it was built with GGML_NATIVE=ON."""

import json
import os
import signal

from standin._build import CFLAGS, CMAKE_ARGS

__version__ = "1.0.0"


def run() -> None:
    print(json.dumps({"system_info": f"CPU : STANDIN = 1 | CMAKE_ARGS = {CMAKE_ARGS}"}), flush=True)
    if "-DGGML_NATIVE=ON" in CMAKE_ARGS.split():
        os.kill(os.getpid(), signal.SIGILL)
    print(json.dumps({"text": "ok", "cflags": CFLAGS}), flush=True)
