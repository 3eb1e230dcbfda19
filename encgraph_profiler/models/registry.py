"""Find a model by bundled name, alias, Hugging Face id or local path; no torch needed.

The registry only discovers: every module of ``models.families`` declares its adapters
(``ADAPTERS``) and the model types it refuses (``REFUSALS``), and each adapter its names, its
authors' own config forms and the vLLM source it follows. No per-family table lives here.
"""

from __future__ import annotations

import difflib
import importlib
import json
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import families
from .base import Adapter, OwnForm, Refusal

DEFAULT_MODEL = "qwen2-vl-7b"


@cache
def _family_modules() -> tuple[Any, ...]:
    return tuple(
        importlib.import_module(f"{families.__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda info: info.name)
    )


@cache
def adapters() -> tuple[Adapter, ...]:
    """Every family's adapter, module by module."""
    return tuple(adapter for module in _family_modules() for adapter in getattr(module, "ADAPTERS", ()))


@cache
def refusals() -> dict[str, Refusal]:
    """Every model type encgraph refuses, with why and the names users give it."""
    return {r.model_type: r for module in _family_modules() for r in getattr(module, "REFUSALS", ())}


def _declared(adapter: Adapter, name: str) -> dict[str, Any]:
    """A per-family table the adapter's own class declares (not one it inherits from its parent family)."""
    return type(adapter).__dict__.get(name, {})


@cache
def aliases() -> dict[str, str]:
    """Name -> bundled config, over every family."""
    return {alias: target for a in adapters() for alias, target in _declared(a, "aliases").items()}


@cache
def hub_ids() -> dict[str, str]:
    """Names of models without a bundled config -> the Hugging Face id to give, over every family."""
    return {name: repo for a in adapters() for name, repo in _declared(a, "hub_ids").items()}


def tiny_config_name(adapter: Adapter) -> str:
    """The tiny config of a family (configs/tiny/), which the tests build without a download."""
    return f"tiny-{adapter.family}"


def own_forms(adapter: Adapter) -> dict[str, OwnForm]:
    """The authors' own config forms ``adapter`` reads, by model_type."""
    return _declared(adapter, "own_forms")


def _own_form(model_type: Any) -> OwnForm | None:
    return next((form for a in adapters() if (form := own_forms(a).get(model_type)) is not None), None)


# Where the image processor's settings are: transformers reads the "image_processor" object of
# processor_config.json where there is one, else preprocessor_config.json.
PROCESSOR_FILE = "processor_config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


def configs_dir() -> Path:
    """Bundled configs: inside the installed package, or ``configs/`` beside it in a checkout."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the bundled name, the path given, or the Hugging Face id
    source: Path  # the config.json read
    config: dict[str, Any]
    adapter: Adapter
    revision: str | None = None  # the Hugging Face revision asked for
    commit: str | None = None  # the Hugging Face snapshot commit the config came from


def parameters_file() -> Path:
    """Parameter counts of the bundled configs, written by tools/count_parameters.py."""
    return configs_dir() / "parameters.json"


def bundled_parameters() -> dict[str, dict[str, int | None]]:
    """{bundled name: {"tower_parameters", "total_parameters"}}, read without torch."""
    return json.loads(parameters_file().read_text())


def bundled_names(include_tiny: bool = False) -> list[str]:
    root = configs_dir()
    names = sorted(p.stem for p in root.glob("*.json") if p != parameters_file())
    if include_tiny:
        names += sorted(p.stem for p in (root / "tiny").glob("*.json"))
    return names


def _bundled_path(name: str) -> Path | None:
    root = configs_dir()
    for path in (root / f"{name}.json", root / "tiny" / f"{name}.json"):
        if path.is_file():
            return path
    return None


def normalize(name: str) -> str:
    """'Qwen2.5-VL-7B-Instruct' -> 'qwen2.5-vl-7b'; 'Qwen2_5-VL' -> 'qwen2.5-vl'."""
    key = name.strip().lower()
    key = re.sub(r"-(instruct|thinking|chat|it)$", "", key)
    key = key.replace("qwen2_5", "qwen2.5").replace("_", "-")
    return aliases().get(key, key)


def native_config(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` as transformers reads it: an authors' own form rewritten by the family that reads it
    (which refuses what it cannot map), a refused model type refused with its reason."""
    model_type = data.get("model_type")
    form = _own_form(model_type)
    if form is not None:
        return form(data, source)
    refused = refusals().get(model_type) if isinstance(model_type, str) else None
    if refused is not None:
        raise UsageError(f"{source}: model_type {model_type!r} is not supported: {refused.reason}")
    return data


def adapter_for(config: dict[str, Any], source: str) -> Adapter:
    model_type = config.get("model_type")
    for adapter in adapters():
        if model_type in adapter.model_types:
            return adapter
    known = ", ".join(t for a in adapters() for t in a.model_types)
    if model_type is None:
        raise UsageError(f"{source}: the config has no model_type; encgraph knows {known}")
    raise UsageError(f"{source}: model_type {model_type!r} is not supported; encgraph knows {known}")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UsageError(
            f"model config {path} is not UTF-8 JSON text (byte {err.start} is 0x{err.object[err.start]:02x})"
        ) from None
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"cannot read model config {path}: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"model config {path} is not a JSON object")
    return data


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.endswith(".json") or "\\" in name


def resolve(name: str, revision: str | None = None) -> ModelSpec:
    """A local config.json or model folder; else, for an org/name id, the Hugging Face cache or
    Hub (never a bundled config that merely shares the name); else a bundled name or alias."""
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise UsageError(
                f"{name} is a directory without a config.json; point --model at a Hugging Face model directory"
            )
    if path.is_file() or _looks_like_path(name):
        if not path.is_file():
            raise UsageError(
                f"{name}: no such file; give a config.json, a model folder, a Hugging Face id or a bundled name"
            )
        if revision is not None:
            raise UsageError("--revision applies to Hugging Face ids, not to a local config")

        def beside(filename: str) -> Path | None:  # a model folder's files sit beside its config.json
            found = path.parent / filename
            return found if path.name == "config.json" and found.is_file() else None

        return _spec(str(name), path, find=beside)
    if "/" in name:
        from .hub import fetch_config

        found = fetch_config(name, revision)
        assert found is not None  # only an optional file can be missing

        def in_repository(filename: str) -> Path | None:
            extra = fetch_config(name, revision, filename, optional=True)
            return extra.path if extra else None

        return _spec(name, found.path, revision, found.commit, in_repository)
    if revision is not None:
        raise UsageError("--revision applies to Hugging Face ids (org/name), not to bundled configs")
    key = normalize(name)
    bundled = _bundled_path(key)
    if bundled is None and key in hub_ids():
        raise UsageError(
            f"{name} has no bundled config: give its Hugging Face id ({hub_ids()[key]}) or a local model folder"
        )
    refused = next((r for r in refusals().values() if key.replace(".", "-") in r.names), None)
    if bundled is None and refused is not None:
        raise UsageError(f"{name} ({refused.model_type}) is not supported: {refused.reason}")
    if bundled is None:
        choices = bundled_names(include_tiny=True) + list(aliases())
        close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(
            f"unknown model {name!r}: {hint}`encgraph models` lists the bundled ones; a Hugging Face id (org/name) or "
            "a config.json path also works"
        )
    return _spec(key, bundled)


def _image_processor(find: Callable[[str], Path | None]) -> dict[str, Any]:
    """The image processor's settings as transformers loads them: the "image_processor" object of
    processor_config.json where it has one, else preprocessor_config.json; {} where neither is."""
    processor = find(PROCESSOR_FILE)
    if processor is not None:
        nested = _read_config(processor).get("image_processor")
        if isinstance(nested, dict):
            return nested
    preprocessor = find(PREPROCESSOR_FILE)
    return _read_config(preprocessor) if preprocessor is not None else {}


def _spec(
    name: str,
    path: Path,
    revision: str | None = None,
    commit: str | None = None,
    find: Callable[[str], Path | None] = lambda filename: None,
) -> ModelSpec:
    """Read, recognise and check a config.json, bundled, local or from the Hub, the same way; for
    a family that reads image processor settings, add the fields it reads (``find`` gives a file of
    the model beside config.json, or None where the model has none: the fields an earlier form kept
    in its config.json, then the family's defaults, apply)."""
    config = native_config(_read_config(path), name)
    adapter = adapter_for(config, name)
    if adapter.preprocessor_fields:
        extra = {**config.get("preprocessor_config", {}), **_image_processor(find)}
        config = {**config, "preprocessor_config": {k: extra[k] for k in adapter.preprocessor_fields if k in extra}}
    adapter.check_config(config, name)
    return ModelSpec(name, path, config, adapter, revision, commit)
