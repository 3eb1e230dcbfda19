"""Find a model by bundled name, alias, Hugging Face id or local path; no torch needed."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import Adapter
from .clip import ClipAdapter
from .deepseek_ocr2 import DeepseekOcr2Adapter
from .ernie4_5_vl import Ernie4_5VLAdapter
from .gemma3 import Gemma3Adapter
from .gemma4 import Gemma4Adapter
from .glm4v import Glm46vAdapter, Glm4vAdapter, Glm4vMoeAdapter
from .idefics3 import Idefics3Adapter, SmolVLMAdapter
from .internvl import InternVLAdapter
from .kimi import KimiK25Adapter, KimiVLAdapter
from .lfm2_vl import Lfm2VlAdapter
from .llama4 import Llama4Adapter
from .qwen2_5_vl import Qwen2_5VLAdapter
from .qwen2_vl import Qwen2VLAdapter
from .remote_code import native_config, refused_forms
from .qwen3_5 import Qwen3_5Adapter, Qwen3_5MoeAdapter, Qwen3VLMoeAdapter
from .qwen3_vl import Qwen3VLAdapter
from .siglip import SiglipAdapter
from .step3p7 import Step3p7Adapter, Step3VLAdapter

ADAPTERS: tuple[Adapter, ...] = (
    Qwen2VLAdapter(),
    Qwen2_5VLAdapter(),
    Qwen3VLAdapter(),
    Qwen3VLMoeAdapter(),
    Qwen3_5Adapter(),
    Qwen3_5MoeAdapter(),
    Gemma3Adapter(),
    Gemma4Adapter(),
    InternVLAdapter(),
    Glm4vAdapter(),
    Glm46vAdapter(),
    Glm4vMoeAdapter(),
    Ernie4_5VLAdapter(),
    KimiK25Adapter(),
    KimiVLAdapter(),
    Llama4Adapter(),
    Lfm2VlAdapter(),
    Step3p7Adapter(),
    Step3VLAdapter(),
    DeepseekOcr2Adapter(),
    Idefics3Adapter(),
    SmolVLMAdapter(),
    SiglipAdapter(),
    ClipAdapter(),
)

# A family name alone picks the size most deployments use.
ALIASES = {
    "qwen2-vl": "qwen2-vl-7b",
    "qwen2.5-vl": "qwen2.5-vl-7b",
    "qwen3-vl": "qwen3-vl-8b",
    "qwen3-vl-moe": "qwen3-vl-30b-a3b",
    "qwen3.5": "qwen3.5-27b",
    "glm-4.1v": "glm-4.1v-9b",
    "glm4v": "glm-4.1v-9b",
    "glm4v-moe": "glm-4.6v",
    "gemma3": "gemma-3-27b",
    "gemma-3": "gemma-3-27b",
    "gemma4": "gemma-4-31b",
    "gemma-4": "gemma-4-31b",
    "kimi": "kimi-k2.5",
    "kimi-vl": "kimi-vl-a3b",
    "lfm2-vl": "lfm2-vl-1.6b",
    "ernie-4.5-vl": "ernie-4.5-vl-28b-a3b",
    "ernie4.5-vl": "ernie-4.5-vl-28b-a3b",
    "ernie-4.5-vl-28b-a3b-pt": "ernie-4.5-vl-28b-a3b",
    "deepseek-ocr2": "deepseek-ocr-2",
    "llama4": "llama-4-scout-17b-16e",
    "llama-4": "llama-4-scout-17b-16e",
    "llama-4-scout": "llama-4-scout-17b-16e",
    "smolvlm": "smolvlm2-500m",
    "smolvlm2": "smolvlm2-500m",
    "smolvlm2-500m-video": "smolvlm2-500m",
    "siglip": "siglip-so400m-patch14-384",
    "clip": "clip-vit-large-patch14-336",
    "internvl": "internvl3-1b",
    "internvl3": "internvl3-1b",
}
DEFAULT_MODEL = "qwen2-vl-7b"
# Families read by Hugging Face id or from a local folder only: no complete published config.json
# was available to bundle. Their names point there instead of to a bundled config.
BY_ID_ONLY = {
    "step-3.7": "stepfun-ai/Step-3.7-Flash",
    "step-3.7-flash": "stepfun-ai/Step-3.7-Flash",
    "step3p7": "stepfun-ai/Step-3.7-Flash",
    "step3-vl": "stepfun-ai/Step3-VL-10B",
    "step3-vl-10b": "stepfun-ai/Step3-VL-10B",
}

# Model types transformers ships that encgraph refuses: no engine layout of their encoder graphs to reproduce.
_MINICPMV_WITHOUT_RESAMPLER = ("{model} has no resampler (a window-attention merger inside the ViT, then a merger), the part by "
                               "whose queries vLLM lays out the encoder graphs of MiniCPM-V 2.5 to 4.5; {engine}")
_NO_VLLM_GRAPHS = "vLLM does not capture encoder CUDA graphs for it (its model there does not opt in), so there are none to measure"
NOT_CAPTURABLE = {
    "minicpmv4_6": _MINICPMV_WITHOUT_RESAMPLER.format(model="MiniCPM-V 4.6", engine=_NO_VLLM_GRAPHS),
    "minicpmv4_7": _MINICPMV_WITHOUT_RESAMPLER.format(model="MiniCPM-V 4.7", engine=_NO_VLLM_GRAPHS),
    "minicpm_ocr": _MINICPMV_WITHOUT_RESAMPLER.format(model="MiniCPM-OCR", engine="no engine layout for its encoder graphs is known"),
}
# The names users give the families encgraph refuses (dots spelled as dashes) -> the model_type whose refusal answers them.
REFUSED_NAMES = {
    "minicpm-v": "minicpmv",
    "minicpm-llama3-v-2-5": "minicpmv",
    "minicpm-v-2-6": "minicpmv",
    "minicpm-v-4": "minicpmv",
    "minicpm-v-4-5": "minicpmv",
    "minicpm-v-4-6": "minicpmv4_6",
    "minicpm-v-4-7": "minicpmv4_7",
    "minicpm-ocr": "minicpm_ocr",
    "step3": "step3_vl",
    "deepseek-vl2": "deepseek_vl_v2",
    "deepseek-vl2-small": "deepseek_vl_v2",
    "deepseek-vl2-tiny": "deepseek_vl_v2",
    "deepseek-ocr": "deepseek_vl_v2",
}


def refusals() -> dict[str, str]:
    """Every model_type encgraph refuses, with why."""
    return {**refused_forms(), **NOT_CAPTURABLE}


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
    return ALIASES.get(key, key)


def adapter_for(config: dict[str, Any], source: str) -> Adapter:
    model_type = config.get("model_type")
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    if model_type in NOT_CAPTURABLE:
        raise UsageError(f"{source}: model_type {model_type!r} is not supported: {NOT_CAPTURABLE[model_type]}")
    known = ", ".join(t for a in ADAPTERS for t in a.model_types)
    raise UsageError(f"{source}: model_type {model_type!r} is not supported; encgraph knows {known}")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
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
            raise UsageError(f"{name} is a directory without a config.json; point --model at a Hugging Face model directory")
    if path.is_file() or _looks_like_path(name):
        if not path.is_file():
            raise UsageError(f"{name}: no such file; give a config.json, a model folder, a Hugging Face id or a bundled name")
        if revision is not None:
            raise UsageError("--revision applies to Hugging Face ids, not to a local config")

        def beside(filename: str) -> Path | None:  # a model folder's files sit beside its config.json
            found = path.parent / filename
            return found if path.name == "config.json" and found.is_file() else None

        return _spec(str(name), path, find=beside)
    if "/" in name:
        from .hub import fetch_config

        found = fetch_config(name, revision)

        def in_repository(filename: str) -> Path | None:
            extra = fetch_config(name, revision, filename, optional=True)
            return extra.path if extra else None

        return _spec(name, found.path, revision, found.commit, in_repository)
    if revision is not None:
        raise UsageError("--revision applies to Hugging Face ids (org/name), not to bundled configs")
    key = normalize(name)
    bundled = _bundled_path(key)
    if bundled is None and key in BY_ID_ONLY:
        raise UsageError(f"{name} has no bundled config: give its Hugging Face id ({BY_ID_ONLY[key]}) or a local model folder")
    refused = REFUSED_NAMES.get(key.replace(".", "-"))
    if bundled is None and refused is not None:
        raise UsageError(f"{name} ({refused}) is not supported: {refusals()[refused]}")
    if bundled is None:
        choices = bundled_names(include_tiny=True) + list(ALIASES)
        close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"unknown model {name!r}: {hint}`encgraph models` lists the bundled ones; a Hugging Face id (org/name) or a config.json path also works")
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


def _spec(name: str, path: Path, revision: str | None = None, commit: str | None = None,
          find: Callable[[str], Path | None] = lambda filename: None) -> ModelSpec:
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
