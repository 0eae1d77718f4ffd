"""``[models.config]`` of ``provider = "llama_server"``: the schema and the llama-server arguments it gives.

Imported by the light entry point (:mod:`heylook_llama_server.plugin`) and by the provider
(:mod:`heylook_llama_server.provider`); it imports pydantic and the core's contract only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from heylook_core import ProviderConfig

_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class LlamaServerConfig(ProviderConfig):
    """``[models.config]`` for ``provider = "llama_server"``.

    A local model names ``model_path``: heylook starts one ``llama-server`` for it on a free loopback port. A remote
    model names ``url`` or ``urls`` instead: heylook starts nothing and balances requests over those upstreams.
    """

    model_path: str | None = Field(default=None, description="GGUF file to serve (local mode)")
    binary: str | None = Field(default=None, description="llama-server executable (default: found automatically)")
    n_ctx: int = Field(default=4096, ge=0, description="context size in tokens, shared by the slots (0 = model's)")
    parallel: int = Field(default=1, ge=1, le=256, description="parallel slots (requests served at once per server)")
    n_threads: int | None = Field(
        default=None, ge=1, description="CPU threads for generation (default: the number of physical cores)"
    )
    n_threads_batch: int | None = Field(
        default=None, ge=1, description="CPU threads for prompt processing (default: n_threads)"
    )
    n_gpu_layers: int | None = Field(default=None, ge=-1, description="layers to offload to the GPU (-1 = all)")
    chat_template: str | None = Field(
        default=None, description="a built-in template name (gemma, chatml, llama3, ...) or Jinja template text"
    )
    chat_template_file: str | None = Field(default=None, description="file holding a Jinja chat template")
    embedding: bool = Field(default=False, description="serve embeddings (llama-server --embedding) instead of chat")
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = Field(
        default=None, description="embedding pooling (default: mean when embedding is on)"
    )
    extra_args: list[str] = Field(default_factory=list, description="more llama-server arguments, passed as given")
    startup_timeout_s: float = Field(default=120.0, gt=0, description="how long to wait for /health after start")
    stop_grace_s: float = Field(default=5.0, ge=0, description="wait after SIGTERM before SIGKILL")
    max_restarts: int = Field(default=5, ge=0, description="restarts after crashes within restart_window_s")
    restart_window_s: float = Field(default=300.0, gt=0)
    url: str | None = Field(default=None, description="a running OpenAI-compatible server to use (remote mode)")
    urls: list[str] = Field(default_factory=list, description="several upstreams, least outstanding requests first")
    upstream_model: str | None = Field(default=None, description="the 'model' value sent upstream (remote mode)")
    api_key: str | None = Field(default=None, description="bearer key sent to remote upstreams")
    health_path: str = Field(default="/health", description="upstream health endpoint")
    health_interval_s: float = Field(default=5.0, gt=0, description="how often remote upstreams are checked")
    request_timeout_s: float = Field(default=600.0, gt=0, description="longest wait for upstream bytes")

    @model_validator(mode="after")
    def _one_mode(self) -> LlamaServerConfig:
        remote = bool(self.url or self.urls)
        if self.url and self.urls:
            raise ValueError("set either url or urls, not both")
        if remote and self.model_path:
            raise ValueError("model_path starts a local llama-server; url/urls use running ones: set one of them")
        if not remote and not self.model_path:
            raise ValueError("set model_path (start a local llama-server) or url/urls (use running servers)")
        if self.chat_template and self.chat_template_file:
            raise ValueError("set chat_template or chat_template_file, not both")
        if self.pooling is not None and not self.embedding:
            raise ValueError("pooling applies only with embedding = true")
        return self

    def threads(self) -> tuple[int, int, str]:
        """Threads for generation and for prompt processing, and why: the config's, else one per physical core."""
        from heylook_llama_server.ggml_build import physical_cores

        cores, how = physical_cores()
        threads = self.n_threads or cores
        why = "n_threads in the config" if self.n_threads else f"default: {how}"
        return threads, self.n_threads_batch or threads, why

    @property
    def remote(self) -> bool:
        return bool(self.url or self.urls)

    def upstream_urls(self) -> list[str]:
        return [u.rstrip("/") for u in ([self.url] if self.url else self.urls)]

    def server_args(self) -> list[str]:
        """The llama-server arguments for this model (without ``--host``/``--port``)."""
        args = ["--model", str(Path(self.model_path or "").expanduser()), "--ctx-size", str(self.n_ctx)]
        args += ["--parallel", str(self.parallel)]
        threads, threads_batch, _ = self.threads()
        args += ["--threads", str(threads), "--threads-batch", str(threads_batch)]
        if self.n_gpu_layers is not None:
            args += ["--n-gpu-layers", str(self.n_gpu_layers)]
        if self.chat_template_file:
            args += ["--jinja", "--chat-template-file", str(Path(self.chat_template_file).expanduser())]
        elif self.chat_template:
            if _TEMPLATE_NAME.match(self.chat_template):  # a built-in name; with Jinja on it would be template text
                args += ["--no-jinja", "--chat-template", self.chat_template]
            else:
                args += ["--jinja", "--chat-template", self.chat_template]
        if self.embedding:
            args += ["--embedding", "--pooling", self.pooling or "mean"]
        return args + list(self.extra_args)
