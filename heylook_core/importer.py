"""``heylookllm import``: find the models already on disk and write them into models.toml.

Finds GGUF files (metadata read with the ``gguf`` package: architecture, parameter count, quantisation, context
length, chat template; ``mmproj*.gguf`` files are paired with the models beside them), MLX folders (``config.json``
plus ``*.safetensors``; vision when the config has a ``vision_config``), faster-whisper / CTranslate2 folders
(``model.bin``, ``config.json`` and a tokenizer or vocabulary), Core ML speech folders (encoder and decoder
``.mlpackage``/``.mlmodelc`` plus ``tokenizer.json``) and the Hugging Face cache (through ``huggingface_hub``'s
``scan_cache_dir``: one entry per repository, its newest snapshot).

Each model becomes a ``[[models]]`` entry for an installed and available provider; the others are listed with the
``pip install`` that would serve them. The file is edited with ``tomlkit`` (``--merge`` keeps comments and order),
validated with :func:`heylook_core.config.load_settings` before it is written, and written atomically with a backup.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heylook_core.errors import ConfigError

if TYPE_CHECKING:
    from heylook_core.plugins import PluginHost
    from heylook_core.providers import ProviderSpec

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'heylook-core[import]'"

# kind -> providers that serve it, in order of preference, and the pip install that brings the first one
PROVIDERS: dict[str, tuple[tuple[str, ...], str]] = {
    "gguf": (("llama_cpp", "llama_server"), "pip install heylook-llamacpp"),
    "mlx": (("mlx",), "pip install heylook-mlx"),
    "ctranslate2": (("faster_whisper",), "pip install heylook-faster-whisper"),
    "coreml_stt": (("coreml_stt",), "pip install heylook-coreml-stt"),
}

PROFILES = ("fast", "balanced", "quality", "low-memory")

# profile -> provider -> [models.config] keys; a key the provider's schema lacks is dropped (see profile_config)
_PROFILE_CONFIG: dict[str, dict[str, dict[str, Any]]] = {
    "fast": {
        "llama_cpp": {"n_ctx": 4096, "n_gpu_layers": -1, "flash_attn": True, "n_batch": 1024},
        "llama_server": {"n_ctx": 4096, "n_gpu_layers": -1},
        "mlx": {"prefill_step_size": 4096},
        "faster_whisper": {"beam_size": 1, "compute_type": "int8"},
        "coreml_stt": {"beam_size": 1},
    },
    "balanced": {
        "llama_cpp": {"n_ctx": 8192, "n_gpu_layers": -1},
        "llama_server": {"n_ctx": 8192, "n_gpu_layers": -1},
        "mlx": {},
        "faster_whisper": {"beam_size": 5},
        "coreml_stt": {"beam_size": 1},
    },
    "quality": {
        "llama_cpp": {"n_ctx": 32768, "n_gpu_layers": -1},
        "llama_server": {"n_ctx": 32768, "n_gpu_layers": -1},
        "mlx": {"max_tokens_default": 2048},
        "faster_whisper": {"beam_size": 5, "compute_type": "default"},
        "coreml_stt": {"beam_size": 5},
    },
    "low-memory": {
        "llama_cpp": {"n_ctx": 2048, "n_gpu_layers": 0, "n_batch": 256, "use_mmap": True},
        "llama_server": {"n_ctx": 2048, "n_gpu_layers": 0, "extra_args": ["--cache-type-k", "q8_0"]},
        "mlx": {"max_kv_size": 4096, "kv_bits": 8, "prompt_cache_size": 1},
        "faster_whisper": {"beam_size": 1, "compute_type": "int8"},
        "coreml_stt": {"beam_size": 1, "compute_units": "cpu_and_ne"},
    },
}

_CONTEXT_KEYS = ("n_ctx", "max_kv_size")
# a GGUF without a chat template gets llama-cpp-python's chat format for its architecture, where one fits
_CHAT_FORMATS = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "qwen2": "chatml", "qwen3": "chatml"}
_QUANT_PREFERENCE = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q6_K", "Q8_0")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


class MissingDependency(ConfigError):
    """The import extra is not installed."""


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise MissingDependency(f"heylookllm import needs the Python package '{module}': {INSTALL_HINT}") from error


@dataclass
class Found:
    """One model found on disk."""

    kind: str  # gguf, mlx, ctranslate2, coreml_stt
    path: Path  # the GGUF file or the model folder
    name: str  # what the id is made from
    info: dict[str, Any] = field(default_factory=dict)
    mmproj: Path | None = None
    vision: bool = False
    source: str = "folder"  # folder or hf-cache

    def summary(self) -> str:
        parts = [self.kind]
        for key in ("architecture", "parameters", "quantization", "context_length"):
            if self.info.get(key):
                parts.append(f"{key}={self.info[key]}")
        if self.kind == "gguf":
            parts.append("chat_template" if self.info.get("chat_template") else "no chat_template")
        if self.mmproj or self.vision:
            parts.append("vision")
        return ", ".join(parts)


# ---------------------------------------------------------------- GGUF metadata


def _field_value(reader: Any, key: str) -> Any:
    item = reader.fields.get(key)
    if item is None:
        return None
    try:
        return item.contents()
    except Exception:  # older gguf: the value is the part the first data index names
        part = item.parts[item.data[0]]
        return bytes(part).decode("utf-8", "replace") if item.types and item.types[0].name == "STRING" else part[0]


def human_count(count: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(count)


def gguf_info(path: Path) -> dict[str, Any]:
    """Architecture, parameter count, quantisation, context length and chat template presence of a GGUF."""
    gguf = _need("gguf")
    reader = gguf.GGUFReader(str(path))
    arch = _field_value(reader, "general.architecture")
    info: dict[str, Any] = {"architecture": arch}
    file_type = _field_value(reader, "general.file_type")
    if file_type is not None:
        try:
            info["quantization"] = gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            info["quantization"] = f"file_type {file_type}"
    if arch:
        context = _field_value(reader, f"{arch}.context_length")
        info["context_length"] = int(context) if context is not None else None
    count = sum(int(t.n_elements) for t in reader.tensors)
    info["parameter_count"] = count
    info["parameters"] = human_count(count) if count else _field_value(reader, "general.size_label")
    info["chat_template"] = _field_value(reader, "tokenizer.chat_template") is not None
    info["name"] = _field_value(reader, "general.name")
    return info


# ---------------------------------------------------------------- scanning


def _is_mmproj(path: Path) -> bool:
    return path.name.lower().startswith("mmproj") or "-mmproj" in path.name.lower()


def _gguf_stem(path: Path) -> str:
    return _SHARD.sub("", path.name) if _SHARD.search(path.name) else path.stem


def _classify_folder(folder: Path, names: set[str]) -> str | None:
    has = {name.lower() for name in names}
    if any(n.startswith("encoder.") for n in has) and any(n.startswith("decoder.") for n in has):
        packages = [n for n in has if n.endswith((".mlpackage", ".mlmodelc"))]
        if packages and "tokenizer.json" in has:
            return "coreml_stt"
    if (
        "model.bin" in has
        and "config.json" in has
        and ({"tokenizer.json"} & has or any(n.startswith("vocabulary") for n in has))
    ):
        return "ctranslate2"
    if "config.json" in has and any(n.endswith(".safetensors") for n in has):
        return "mlx"
    return None


def _mlx_vision(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and ("vision_config" in config or "vision_tower" in config)


def _mlx_info(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    text = config.get("text_config", config) if isinstance(config, dict) else {}
    info: dict[str, Any] = {"architecture": config.get("model_type")}
    if isinstance(text, dict) and isinstance(text.get("max_position_embeddings"), int):
        info["context_length"] = text["max_position_embeddings"]
    quant = config.get("quantization") if isinstance(config, dict) else None
    if isinstance(quant, dict) and quant.get("bits"):
        info["quantization"] = f"{quant['bits']}bit"
    return info


def scan_folder(root: Path, source: str = "folder", name: str | None = None) -> list[Found]:
    """Every model under ``root``; a model folder is not searched further."""
    found: list[Found] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        names = set(dirs) | set(files)
        kind = _classify_folder(here, names)
        if kind is not None:
            label = name or here.name
            if kind == "mlx":
                found.append(Found("mlx", here, label, _mlx_info(here), vision=_mlx_vision(here), source=source))
            else:
                found.append(Found(kind, here, label, source=source))
            dirs[:] = []
            continue
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not d.lower().endswith((".mlpackage", ".mlmodelc"))
        )
        ggufs = sorted(here / f for f in files if f.lower().endswith(".gguf"))
        projectors = [p for p in ggufs if _is_mmproj(p)]
        models = [p for p in ggufs if not _is_mmproj(p)]
        models = [p for p in models if not (m := _SHARD.search(p.name)) or int(m.group(1)) == 1]
        for path in models:
            try:
                info = gguf_info(path)
            except MissingDependency:
                raise
            except Exception as error:  # a truncated or foreign file is reported, not fatal
                logger.warning("%s: not a readable GGUF (%s); skipped", path, error)
                continue
            item = Found("gguf", path, _gguf_stem(path), info, source=source)
            item.mmproj = _pair(path, projectors)
            found.append(item)
    return found


def _pair(model: Path, projectors: list[Path]) -> Path | None:
    """The mmproj beside a model: the only one, else the one whose name shares the longest prefix."""
    if not projectors:
        return None
    if len(projectors) == 1:
        return projectors[0]
    stem = model.stem.lower()

    def shared(p: Path) -> int:
        other = p.stem.lower().replace("mmproj-", "").replace("-mmproj", "")
        return len(os.path.commonprefix([stem, other]))

    return max(projectors, key=shared)


def scan_hf_cache(cache_dir: Path | None = None) -> list[Found]:
    """One entry per model repository of the Hugging Face cache, from its newest snapshot."""
    hub = _need("huggingface_hub")
    try:
        info = hub.scan_cache_dir(cache_dir) if cache_dir is not None else hub.scan_cache_dir()
    except Exception as error:  # CacheNotFound: no cache is nothing to import
        logger.info("no Hugging Face cache: %s", error)
        return []
    found: list[Found] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        # the revision refs/main points to, else the most recently modified one
        newest = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified, r.commit_hash))
        name = repo.repo_id.split("/")[-1]
        items = scan_folder(Path(newest.snapshot_path), source="hf-cache", name=name)
        ggufs = [item for item in items if item.kind == "gguf"]
        others = [item for item in items if item.kind != "gguf"]
        if others:
            chosen = others[0]
        elif ggufs:
            chosen = _choose_quant(ggufs)
            stem = re.sub(r"[-_.]gguf$", "", name, flags=re.IGNORECASE)
            quant = chosen.info.get("quantization")
            chosen.name = f"{stem}-{quant}" if quant and len(ggufs) > 1 else stem
        else:
            continue
        chosen.info["repo"] = repo.repo_id
        chosen.info["revision"] = newest.commit_hash
        found.append(chosen)
    return found


def _choose_quant(items: list[Found]) -> Found:
    def rank(item: Found) -> tuple[int, str]:
        quant = str(item.info.get("quantization") or "").upper()
        return (
            _QUANT_PREFERENCE.index(quant) if quant in _QUANT_PREFERENCE else len(_QUANT_PREFERENCE),
            item.path.name,
        )

    return min(items, key=rank)


# ---------------------------------------------------------------- entries


def slug(text: str) -> str:
    value = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return re.sub(r"-{2,}", "-", value) or "model"


def unique_id(base: str, taken: set[str]) -> str:
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    taken.add(candidate)
    return candidate


def available_providers(host: PluginHost) -> dict[str, ProviderSpec[Any]]:
    """The host's providers whose availability check passes here."""
    ready = {}
    for name, spec in host.providers.items():
        try:
            ok = spec.check().ok
        except Exception:  # a broken check counts as unavailable
            ok = False
        if ok:
            ready[name] = spec
    return ready


def provider_for(item: Found, ready: dict[str, ProviderSpec[Any]]) -> str | None:
    names, _ = PROVIDERS[item.kind]
    for name in names:
        if name in ready:
            return name
    return None


def profile_config(profile: str, spec: ProviderSpec[Any], item: Found) -> dict[str, Any]:
    """The profile's keys that ``spec``'s schema has; context sizes are capped at the model's trained length."""
    from heylook_core.config import config_keys

    keys = config_keys(spec.config_schema)
    wanted = dict(_PROFILE_CONFIG[profile].get(spec.name, {}))
    trained = item.info.get("context_length")
    result: dict[str, Any] = {}
    for key, value in wanted.items():
        if key not in keys:
            continue
        if key in _CONTEXT_KEYS and isinstance(trained, int) and trained > 0:
            value = min(value, trained)
        result[key] = value
    return result


def model_config(item: Found, spec: ProviderSpec[Any], profile: str) -> dict[str, Any]:
    from heylook_core.config import config_keys

    config: dict[str, Any] = {"model_path": str(item.path)}
    if item.kind == "gguf" and item.mmproj is not None and spec.name == "llama_cpp":
        config["mmproj"] = str(item.mmproj)
    if item.kind == "gguf" and spec.name == "llama_cpp" and not item.info.get("chat_template"):
        chat_format = _CHAT_FORMATS.get(str(item.info.get("architecture")))
        if chat_format is not None and "chat_format" in config_keys(spec.config_schema):
            config["chat_format"] = chat_format
    if item.kind == "mlx" and item.vision:
        config["vision"] = True
    config.update(profile_config(profile, spec, item))
    return config


def description_of(item: Found) -> str:
    bits = [str(item.info[key]) for key in ("architecture", "parameters", "quantization") if item.info.get(key)]
    where = item.info.get("repo") or item.path.name
    return " ".join(bits + [f"({where})"]) if bits else str(where)


# ---------------------------------------------------------------- the TOML document


def configured_paths(document: Any) -> set[str]:
    paths = set()
    for model in document.get("models", []) or []:
        value = (model.get("config") or {}).get("model_path")
        if isinstance(value, str):
            paths.add(str(Path(value).expanduser()))
    return paths


def add_entries(document: Any, entries: list[dict[str, Any]]) -> None:
    tomlkit = _need("tomlkit")
    models = document.get("models")
    if models is None:
        models = tomlkit.aot()
        document.append("models", models)
    for entry in entries:
        table = tomlkit.table()
        for key in ("id", "provider", "description"):
            table.add(key, entry[key])
        config = tomlkit.table()
        for key, value in entry["config"].items():
            config.add(key, value)
        table.add("config", config)
        models.append(table)


def validate(text: str, target: Path, host: PluginHost) -> None:
    """Load ``text`` as ``serve`` would (a temporary file beside the target); a :class:`ConfigError` if it fails."""
    from heylook_core.config import load_settings

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".models-", suffix=".toml", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        failed = [f"{r.name} ({r.error})" for r in host.failed()]
        load_settings(host.providers, host.offered_models, config_path=temporary, failed_plugins=failed)
    finally:
        os.unlink(temporary)


def write_atomic(text: str, target: Path) -> Path | None:
    """Write ``text`` to ``target`` through a temporary file and a rename; an existing file is kept as ``.bak``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if target.exists():
        backup = target.with_name(target.name + ".bak")
        shutil.copy2(target, backup)
    handle, temporary = tempfile.mkstemp(prefix="." + target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return backup


# ---------------------------------------------------------------- the command


def register(cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = cli.add_parser(
        "import", help="find GGUF, MLX and speech models in folders and the Hugging Face cache; write models.toml"
    )
    parser.add_argument("--folder", action="append", default=[], metavar="DIR", help="folder to scan (repeatable)")
    parser.add_argument("--hf-cache", action="store_true", help="scan the Hugging Face cache ($HF_HUB_CACHE)")
    parser.add_argument("--profile", choices=PROFILES, default="balanced", help="model settings for a use")
    parser.add_argument("--output", default=None, help="file to write (default: the user config dir's models.toml)")
    parser.add_argument("--merge", action="store_true", help="add new models to an existing file, keeping it")
    parser.add_argument("--force", action="store_true", help="replace an existing file (a .bak copy is kept)")
    parser.add_argument("--dry-run", action="store_true", help="print the result; write nothing")
    parser.add_argument("--interactive", action="store_true", help="ask per model: include, id, profile")
    parser.set_defaults(handler=import_command)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def default_output() -> Path:
    from platformdirs import user_config_path

    from heylook_core.config import CONFIG_NAME

    return user_config_path("heylook") / CONFIG_NAME


@dataclass
class Scan:
    label: str
    run: Callable[[], list[Found]]


def _scans(args: argparse.Namespace) -> Iterator[Scan]:
    for folder in args.folder:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ConfigError(f"--folder {folder}: not a folder")
        yield Scan(str(path), functools.partial(scan_folder, path.resolve()))
    if args.hf_cache:
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
        yield Scan(cache or "the Hugging Face cache", lambda: scan_hf_cache(Path(cache) if cache else None))


def _run_scans(scans: Iterable[Scan]) -> list[Found]:
    scans = list(scans)
    found: list[Found] = []
    if sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)
        for scan in scans:
            with console.status(f"scanning {scan.label} ..."):
                items = scan.run()
            console.print(f"scanned {scan.label}: {len(items)} model(s)")
            found += items
    else:
        for scan in scans:
            found += scan.run()
    return found


def _ask(prompt: str, default: str) -> str:
    answer = input(f"{prompt} [{default}]: ").strip()
    return answer or default


def import_command(args: argparse.Namespace) -> int:
    if not args.folder and not args.hf_cache:
        raise ConfigError("heylookllm import: give --folder DIR (repeatable) and/or --hf-cache")
    tomlkit = _need("tomlkit")
    host: PluginHost = args.plugin_host
    target = Path(args.output).expanduser() if args.output else default_output()
    exists = target.exists()
    if exists and not (args.merge or args.force or args.dry_run):
        raise ConfigError(f"{target} exists; --merge adds the new models to it, --force replaces it (keeping a .bak)")
    if exists and args.merge:
        try:
            document = tomlkit.parse(target.read_text(encoding="utf-8"))
        except Exception as error:
            raise ConfigError(f"{target}: cannot merge into it: {error}") from error
    else:
        document = tomlkit.document()
        document.add(tomlkit.comment("written by heylookllm import; see docs/configuration.md"))
    taken = {str(m.get("id")) for m in document.get("models", []) or []}
    known_paths = configured_paths(document)

    found = _run_scans(_scans(args))
    ready = available_providers(host)
    entries: list[dict[str, Any]] = []
    missing: list[tuple[Found, str]] = []
    skipped = 0
    seen_paths: set[str] = set()
    for item in found:
        key = str(item.path)
        if key in known_paths or key in seen_paths:
            skipped += 1
            continue
        seen_paths.add(key)
        provider = provider_for(item, ready)
        if provider is None:
            missing.append((item, PROVIDERS[item.kind][1]))
            continue
        profile = args.profile
        model_id = slug(item.name)
        if args.interactive:
            _out(f"{item.path}: {item.summary()} -> provider {provider}")
            if _ask("include", "y").lower() not in ("y", "yes"):
                continue
            model_id = slug(_ask("id", unique_id(model_id, set(taken))))
            while True:
                profile = _ask(f"profile ({', '.join(PROFILES)})", args.profile)
                if profile in PROFILES:
                    break
                _out(f"unknown profile {profile!r}")
        entry_id = unique_id(model_id, taken)
        entries.append(
            {
                "id": entry_id,
                "provider": provider,
                "description": description_of(item),
                "config": model_config(item, ready[provider], profile),
                "found": item,
            }
        )

    for entry in entries:
        _out(f"+ {entry['id']:<32} {entry['provider']:<14} {entry['found'].summary()}")
    for item, install in missing:
        _out(f"- {slug(item.name):<32} not written: no provider here for {item.kind} ({item.path}); {install}")
    if skipped:
        _out(f"  {skipped} model(s) already in {target}")
    if not entries:
        _out("nothing new to write")
        return 0
    add_entries(document, entries)
    text = tomlkit.dumps(document)
    validate(text, target, host)
    if args.dry_run:
        _out(text)
        return 0
    backup = write_atomic(text, target)
    _out(f"wrote {len(entries)} model(s) to {target}" + (f" (previous file kept as {backup})" if backup else ""))
    return 0
