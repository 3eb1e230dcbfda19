"""What every model-family adapter provides: build the tower, lay out a budget, make its inputs.

Adapters import torch and transformers lazily inside their methods, so that the registry can list
and resolve models without paying for those imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ..errors import UsageError
from ..ladder import doubling_ladder
from ..schema import OnGraph
from ..units import is_whole_number

# Vision-config fields that are whole positive numbers wherever a family has them.
POSITIVE_INT_FIELDS = frozenset(
    {
        "depth",
        "embed_dim",
        "hidden_size",
        "num_heads",
        "patch_size",
        "spatial_merge_size",
        "temporal_patch_size",
        "in_channels",
        "num_channels",
        "intermediate_size",
        "out_hidden_size",
        "window_size",
        "num_position_embeddings",
        "image_size",
        "num_hidden_layers",
        "num_attention_heads",
        "projection_dim",
    }
)

DTYPES = {"bfloat16": 2, "float16": 2, "float32": 4}
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


# An authors' own config form read as transformers' native one: (the config.json dict, where it
# came from) -> the native dict, or UsageError with the form that works instead.
OwnForm = Callable[[dict[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class VllmSource:
    """Where vLLM defines a family's encoder-graph rules: the file, relative to the vllm package
    (``model_executor/models/qwen2_vl.py``), and the class in it that implements
    SupportsEncoderCudaGraph (its get_encoder_cudagraph_budget_range, get_encoder_cudagraph_item_specs
    and prepare_encoder_cudagraph_capture_inputs), as in the vLLM release encgraph follows."""

    file: str
    cls: str
    # The class declares supports_mm_device_do_normalize: vLLM captures uint8 pixels, normalized in the graph.
    normalizes_pixels: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Refusal:
    """A model type encgraph does not profile, why, and the names users give it. ``vllm`` lists the
    places vLLM captures its encoder graphs, where it does: the reason must then not say it does not."""

    model_type: str
    reason: str
    names: tuple[str, ...] = ()  # dots written as dashes, lower case: "minicpm-v-2-6"
    vllm: tuple[VllmSource, ...] = ()


def whole_numbers(
    data: dict[str, Any], key: str, default: Any, source: str, least: int = 0, many: bool = True
) -> list[int]:
    """``data[key]`` (or ``default``): a whole number, or with ``many`` a list of them, each at least ``least``."""
    value = data.get(key, default)
    values = value if isinstance(value, list) and many else [value]
    if not values or not all(is_whole_number(v, least) for v in values):
        raise UsageError(
            f"{source}: {key} is {value!r}; it must be a whole number of at least {least}"
            + (", or a list of them" if many else "")
        )
    return values


def random_input(shape: tuple[int, ...], dtype: str, device, generator, uniform: bool = False):
    """A tower input of random values on ``device`` (``"uint8"``: raw pixel values, 0 to 255), drawn on
    the host (a failed capture cannot spoil a device generator); on the meta device (``predict``) its
    shape alone: nothing is materialised, so a prediction's memory does not grow with the budget's pixels."""
    import torch

    if torch.device(device).type == "meta":
        return torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
    if dtype == "uint8":
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8).to(device)
    values = torch.rand(shape, generator=generator) if uniform else torch.randn(shape, generator=generator)
    return values.to(device=device, dtype=getattr(torch, dtype))


@dataclass(frozen=True)
class PixelNorm:
    """A processor's (x * rescale - mean) / std per channel, which vLLM 0.33.0 runs on the device for
    a model whose class declares supports_mm_device_do_normalize (mm_device_do_normalize, on by
    default): it captures uint8 pixels, and its graph's first step (FusedMMInputNorm, layers/fusion/
    mm_input_norm.py) writes them normalized, in the tower's dtype, into a new tensor of their shape."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    rescale: float = 1 / 255

    @property
    def is_identity(self) -> bool:
        """vLLM's NormParams.is_identity: then it normalizes nothing and captures pixels in the tower's dtype."""
        return all(
            math.isclose(self.rescale / s, 1.0, rel_tol=1e-5, abs_tol=1e-8) and math.isclose(m / s, 0.0, abs_tol=1e-8)
            for m, s in zip(self.mean, self.std, strict=True)
        )


PIXEL_NORM_BUFFER = "pixel_norm"  # the pixel module's buffer: [rescale / std, -mean / std], float32
NORMALIZED_ON_DEVICE = "uint8 pixels, normalized on the device inside the graph (vLLM's mm_device_do_normalize)"


def normalized_pixels(pixels, table, dtype):
    """uint8 ``pixels`` (rows channel-major) as vLLM's FusedMMInputNorm.forward_cuda writes them: x *
    rescale / std - mean / std in float32, into a new ``dtype`` tensor of their shape, nothing else
    allocated. addcmul into it does so: CUDA's TensorIterator casts uint8 in and ``dtype`` out inside
    the kernel around float32 math (it makes temporaries on the CPU only); on meta, out= allocates nothing."""
    import torch

    out = torch.empty(pixels.shape, dtype=dtype, device=pixels.device)
    rows, channels = pixels.shape[0], table.shape[1]
    scale, shift = (row.view(1, channels, 1) for row in table)
    torch.addcmul(shift, pixels.view(rows, channels, -1), scale, out=out.view(rows, channels, -1))
    return out


def _normalize_uint8_pixels(module, args):
    """Forward pre-hook: uint8 pixels in, the module's forward gets them normalized in its dtype."""
    import torch

    if args[0].dtype != torch.uint8:
        return None
    return (normalized_pixels(args[0], getattr(module, PIXEL_NORM_BUFFER), next(module.parameters()).dtype), *args[1:])


def load_class(name: str):
    import importlib

    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def canonical_dtype(name: str) -> str:
    name = DTYPE_ALIASES.get(name.lower(), name.lower())
    if name not in DTYPES:
        raise UsageError(f"unknown --dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return name


@dataclass(frozen=True)
class Layout(OnGraph):
    """How one budget is fed to the tower when its graph is captured."""

    budget: int
    items: int  # images in the captured batch
    tokens: int  # vision tokens the batch produces (after spatial merge), >= budget
    input_patches: int  # patches the tower embeds
    grids: tuple[tuple[int, int, int], ...] = ()  # [t, h, w] patch grids, dynamic-resolution towers
    meaning: str = ""  # the budget in the user's terms: "8,192 tokens = 128 images of 28x1792 px, ..."
    max_seqlen: int = 0  # the longest sequence packed attention is told of; 0: the longest there is
    spare_sequences: int = 0  # zero-length sequences after the items in cu_seqlens (vLLM's Kimi-K2.5 capture)
    path: str = ""  # the encoder path whose graph this is, for families with more than one; "" otherwise
    # With vLLM's on-device normalization (VllmSource.normalizes_pixels): uint8 pixels the graph normalizes first.
    pixel_norm: PixelNorm | None = None


class Adapter:
    """Base class of the family adapters. Subclasses set the class attributes and the methods."""

    family: str = ""
    model_types: tuple[str, ...] = ()  # the "model_type" values of full configs this adapter reads
    vllm: VllmSource | None = None  # None: no vLLM release captures this family's encoder graphs
    # Further places vLLM defines the same capture rules for the same model (one class per platform:
    # DeepSeek-V4.1's NVIDIA and ROCm builds), which the drift test counts as this family's too.
    vllm_also: tuple[VllmSource, ...] = ()
    # Names that pick one of the family's bundled configs ("qwen2-vl" -> "qwen2-vl-7b").
    aliases: ClassVar[dict[str, str]] = {}
    # Names of models without a bundled config -> the Hugging Face id to give instead.
    hub_ids: ClassVar[dict[str, str]] = {}
    # The authors' own config forms this family reads, by their model_type (see OwnForm). A form
    # may share the native model_type when only some of its fields need rewriting.
    own_forms: ClassVar[dict[str, OwnForm]] = {}
    dynamic_resolution: bool = True
    takes_max_items: bool = True  # a budget's batch is capped at k items (vLLM's max items per batch)
    packs_sequences: bool = False  # the tower passes cu_seqlens to its attention: --attn varlen applies
    captures_video: bool = False  # vLLM captures a video layout for the family (--max-frames-per-batch)
    # The only attention vLLM captures the family's graphs with (MiniMax M3: "varlen", its FLASH_ATTN ViT
    # backend); None where vLLM captures them with any. --as vllm refuses another.
    vllm_attention: str | None = None
    has_language_model: bool = True
    # vLLM's encoder paths, each with its own set of budget graphs in the one pool, in capture order
    # (Step3-VL: global images and local crops); ("",) for the single path of most families.
    paths: tuple[str, ...] = ("",)
    # vLLM's capture axes (Gemma 4's row widths): each budget is captured once per axis key, budget
    # after budget, each budget's keys in the order graph_layouts gives them; the keys are the
    # layouts' ``path``.
    budget_major: bool = False
    # The image processor's normalization, which vLLM runs in the graph where its class normalizes on the device.
    processor_norm: PixelNorm | None = None
    pixel_module: str = "patch_embed"  # the tower's submodule that first reads the pixels (its patch embedding)
    # Fields the family reads from the model's image processor settings (processor_config.json or
    # preprocessor_config.json: image sizes, tokens per image); the registry puts them under
    # "preprocessor_config" in the config dict.
    preprocessor_fields: tuple[str, ...] = ()
    # Fields the vision config must state: without them transformers would fill in its class
    # defaults and the profile would measure a tower nobody deploys.
    size_fields: tuple[str, ...] = ()

    # The transformers classes, named "module:Class" and imported only when used, so that the
    # registry lists and resolves models without importing transformers.
    config_class_name: str = ""
    tower_class_name: str = ""  # the captured module, where one transformers class is all of it
    model_class_name: str = ""  # the whole model, for parameter counts

    # -- configs -----------------------------------------------------------------------------
    def config_class(self):
        return load_class(self.config_class_name)

    def check_config(self, data: dict[str, Any], source: str) -> None:
        """Refuse a config.json dict that would not describe this family's real tower. No torch."""
        vision = data.get("vision_config")
        if not isinstance(vision, dict):
            raise UsageError(
                f"{source} has no vision_config object: give the whole model's config.json, as the model repository "
                "has it"
            )
        missing = [f for f in self.size_fields if f not in vision]
        if missing:
            raise UsageError(
                f"{source}: vision_config lacks {', '.join(missing)}; without them the tower's size is unknown"
            )
        for name, value in vision.items():
            # Sizes are whole numbers above 0; image and patch sizes may be given as [height, width].
            values = value if isinstance(value, list) and name in ("image_size", "patch_size") else [value]
            if name in POSITIVE_INT_FIELDS and not all(is_whole_number(v, least=1) for v in values):
                raise UsageError(f"{source}: vision_config.{name} is {value!r}; it must be a whole number above 0")
        width = vision.get("embed_dim", vision.get("hidden_size"))
        heads = vision.get("num_heads", vision.get("num_attention_heads"))
        if "head_dim" not in vision and is_whole_number(width, 1) and is_whole_number(heads, 1) and width % heads:
            raise UsageError(
                f"{source}: the vision width, {width}, does not split into its {heads} attention heads; "
                "transformers would build a tower that cannot run"
            )

    def full_config(self, data: dict[str, Any]):
        """The transformers config object of the whole model, from a config.json dict."""
        data = {k: v for k, v in data.items() if k not in ("model_type", "preprocessor_config")}
        return self.read_config(self.config_class(), data)

    def read_config(self, config_class, data: dict[str, Any]):
        """``config_class(**data)``, a config transformers refuses reported in one line."""
        from huggingface_hub.errors import StrictDataclassError  # a field of the wrong type

        try:
            return config_class(**data)
        except (TypeError, ValueError, KeyError, AttributeError, StrictDataclassError) as err:
            raise UsageError(
                f"transformers cannot read this {self.family} config: {str(err).splitlines()[0]}"
            ) from None

    def preprocessor_int(self, data: dict[str, Any], name: str, default: int) -> int:
        """A whole-number field of the model's image processor settings (see preprocessor_fields),
        or the image processor's ``default`` where the model has none."""
        value = data.get("preprocessor_config", {}).get(name, default)
        if not is_whole_number(value, least=1):
            raise UsageError(f"the image processor's {name} is {value!r}; it must be a whole number above 0")
        return value

    def tower_config(self, data: dict[str, Any]):
        """The config the captured part is built from: the vision config, unless the family's
        graph covers more (a projector that needs the whole model's config)."""
        return self.full_config(data).vision_config

    # -- modules -----------------------------------------------------------------------------
    def tower_class(self):
        return load_class(self.tower_class_name)

    def full_model_class(self):
        return load_class(self.model_class_name)

    def tower_module(self):
        """The captured module's class where it is more than one transformers class (a vision model
        and a projector), built as cls(config, dtype, attn) and defined lazily (it needs torch);
        None where ``tower_class_name`` is all of it."""
        return None

    def build_tower(self, tower_config, dtype: str, attn: str):
        """Random-weight tower on the current default device (graph memory ignores weight values)."""
        import torch

        module = self.tower_module()
        if module is not None:
            return module(tower_config, getattr(torch, dtype), attn).eval()
        tower = (
            self.tower_class()
            ._from_config(
                tower_config, dtype=getattr(torch, dtype), attn_implementation="sdpa" if attn == "varlen" else attn
            )
            .eval()
        )
        if attn == "varlen":
            from . import varlen

            varlen.use(tower)
        return tower

    # -- budgets -----------------------------------------------------------------------------
    def min_budget(self, tower_config) -> int:
        """vLLM's smallest encoder budget for the family, from which it derives its automatic items
        per batch: 64 tokens (a 224 x 224 image) for the Qwen-style grids."""
        return 64

    def layout(self, vision_config, budget: int, items: int) -> Layout:
        """The graph of one budget, for a family with one encoder path."""
        raise NotImplementedError

    def path_minimums(self, config) -> dict[str, int]:
        """Each encoder path's smallest budget (one item of that path), for a family with several."""
        raise NotImplementedError

    def path_layout(self, config, path: str, budget: int, items: int) -> Layout:
        """The graph of one budget on one encoder path, for a family with several."""
        raise NotImplementedError

    def graph_layouts(self, config, budgets: tuple[int, ...], items: int) -> list[Layout]:
        """Every graph the engine captures for ``budgets``: one per budget; or, for a family with
        encoder paths, vLLM's ladder on each path, from that path's smallest budget doubling up to
        the largest budget given (the budgets given below the largest do not apply to such paths)."""
        if self.paths == ("",):
            return [self.layout(config, budget, items) for budget in budgets]
        largest, graphs = max(budgets), []
        for path, smallest in self.path_minimums(config).items():
            if largest < smallest:
                raise UsageError(
                    f"the largest budget, {largest}, is below one {self.family} {path} item ({smallest} tokens): vLLM "
                    f"captures {path} budgets from {smallest} up to the largest; give a budget of {smallest} or more"
                )
            graphs += [self.path_layout(config, path, budget, items) for budget in doubling_ladder(smallest, largest)]
        return graphs

    def vllm_layout(self, layout: Layout, vision_config, frames_per_batch: int) -> Layout:
        """``layout`` where vLLM's capture inputs differ from it (a fixed longest sequence, a video
        layout for ``frames_per_batch`` frames); unchanged where they do not."""
        return layout

    def vllm_capture_layout(self, layout: Layout, vision_config, frames_per_batch: int) -> Layout:
        """``vllm_layout``; where vLLM normalizes on the device, uint8 pixels the graph normalizes first."""
        layout = self.vllm_layout(layout, vision_config, frames_per_batch)
        norm = self.processor_norm if self.vllm is not None and self.vllm.normalizes_pixels else None
        if norm is None or norm.is_identity:
            return layout
        return replace(layout, pixel_norm=norm, meaning=f"{layout.meaning}; {NORMALIZED_ON_DEVICE}")

    def pixels(self, tower, layout: Layout, shape: tuple[int, ...], dtype: str, device, generator):
        """The batch's pixels, as ``random_input``; with ``layout.pixel_norm``, raw uint8 values, and
        the tower set to normalize them (``normalize_pixels_in``)."""
        if layout.pixel_norm is not None:
            self.normalize_pixels_in(tower, layout.pixel_norm)
        return random_input(shape, dtype if layout.pixel_norm is None else "uint8", device, generator)

    def normalize_pixels_in(self, tower, norm: PixelNorm) -> None:
        """Make ``pixel_module`` normalize uint8 pixels before it reads them, as vLLM's input norm runs
        before its patch embedding: they live while that module runs. The scale and shift are its buffer,
        made once outside any graph, as vLLM's are buffers of its tower. Does nothing a second time."""
        import torch

        module = tower.get_submodule(self.pixel_module)
        if hasattr(module, PIXEL_NORM_BUFFER):
            return
        mean, std = (torch.tensor(values, dtype=torch.float32, device="cpu") for values in (norm.mean, norm.std))
        table = torch.stack([norm.rescale / std, -mean / std]).to(next(module.parameters()).device)
        module.register_buffer(PIXEL_NORM_BUFFER, table, persistent=False)
        module.register_forward_pre_hook(_normalize_uint8_pixels)

    def make_inputs(self, tower, vision_config, layout: Layout, dtype: str, device, generator) -> dict:
        """Static inputs for one budget, every grid-dependent tensor precomputed outside the graph;
        the pixels made with ``pixels``."""
        raise NotImplementedError

    def forward(self, tower, inputs: dict):
        """Run the tower on ``make_inputs``' result; returns the tuple of output tensors."""
        raise NotImplementedError

    def reference_forward(self, tower, inputs: dict):
        """The plain forward, with nothing precomputed: what tests compare ``forward`` against."""
        return self.forward(tower, inputs)
