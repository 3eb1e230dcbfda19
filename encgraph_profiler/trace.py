"""The allocations a captured forward makes, found without a GPU: the forward runs on meta tensors
under a dispatch mode that sees every operator's outputs, and a storage counts as freed when the
last tensor that refers to it is gone, as the CUDA allocator frees a block when its storage dies.

Each event is (``"alloc"``, key, bytes) or (``"free"``, key, 0), in the order the GPU run would make
them. Where a CUDA kernel, not the Python code, decides what is allocated, the trace follows the
kernel: sdpa runs a fused kernel on the GPU that allocates its output and a few small buffers, never
the attention matrix that sdpa's matrix-multiply path on meta tensors would; layer norm and linear
make hidden copies and statistics, cuDNN's patch convolution a workspace (``_TEMPORARIES``). Each
rule was found by comparing this trace with captures recorded on an H100.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _copy_bytes(x: torch.Tensor) -> int:
    return x.numel() * x.element_size()


def _layer_norm(args) -> tuple[list[int], list[int]]:
    """CUDA's layer norm works on a contiguous copy of a non-contiguous input (made first), and
    also makes the per-row mean and reciprocal deviation (float32) after its output; all three
    go when it returns."""
    x, shape = args[0], args[1]
    rows = x.numel() // max(1, torch.Size(shape).numel())
    return ([] if x.is_contiguous() else [_copy_bytes(x)]), [rows * 4, rows * 4]


def _linear(args) -> tuple[list[int], list[int]]:
    """CUDA's linear multiplies a 2-D view of its input; an input that cannot be viewed so is
    copied first, and the copy goes when it returns."""
    x = args[0]
    try:
        x.view(-1, x.shape[-1])
    except RuntimeError:
        return [_copy_bytes(x)], []
    return [], []


def _patch_convolution(args) -> tuple[list[int], list[int]]:
    """cuDNN's patch embedding (3 input channels, stride = kernel, half precision) as cuDNN 9.19
    runs it on an H100: for output grids of up to 28 x 28 it takes, after the output, one workspace
    holding the input and the weight with their channels padded to 8 and the output, all NHWC, plus
    16 bytes, and from about 40 million input elements on a 2,352-byte one instead; larger grids
    (32 x 32 and up) take none. A 1 x 1 output grid (one patch an image, as Kimi's MoonViT embeds
    its packed patches) is the same in NHWC as in NCHW: its workspace holds the padded input and
    weight alone, at any size from 128 patches (probed up to 262,144), and 64 patches or fewer take
    none. Frees it on return. Found in recorded captures of SigLIP-so400m, CLIP-L and Kimi-K2.5
    and probed shape by shape (tools/probe_conv_workspace.py, its output in
    tests/data/conv_workspace.h100.jsonl); other GPUs and cuDNN versions may choose other engines."""
    x, weight = args[0], args[1]
    stride = args[3] if len(args) > 3 else 1
    kernel = tuple(weight.shape[-2:])
    strides = tuple(stride) if isinstance(stride, (list, tuple)) else (stride, stride)
    if x.dim() != 4 or x.shape[1] != 3 or x.dtype not in (torch.float16, torch.bfloat16) or strides != kernel:
        return [], []
    rows, cols = x.shape[2] // kernel[0], x.shape[3] // kernel[1]
    if max(rows, cols) > 28:  # 28 x 28: DeepSeek-VL2's 392-pixel tiles, matched in its H100 captures
        return [], []
    batch, out_channels, size, padded = x.shape[0], weight.shape[0], x.element_size(), 8
    single = rows == cols == 1
    if single and batch <= 64:
        return [], []
    if x.numel() > 40_000_000 and not single:
        return [], [2352]
    output = 0 if single else batch * rows * cols * out_channels
    workspace = (
        size * (batch * x.shape[2] * x.shape[3] * padded + output + out_channels * kernel[0] * kernel[1] * padded) + 16
    )
    return [], [workspace]


def _embedding_bag_outputs(outputs):
    """CUDA's embedding bag makes its per-bag sizes and its index-to-bag map before its output (the
    meta kernel makes its output first): its outputs in the order the GPU allocates them."""
    output, offset2bag, bag_size, max_indices = outputs
    return bag_size, offset2bag, output, max_indices


# Operators whose CUDA kernels allocate their outputs in another order than the meta kernels.
_OUTPUT_ORDER = {
    torch.ops.aten.embedding_bag.padding_idx: _embedding_bag_outputs,
    torch.ops.aten._embedding_bag.default: _embedding_bag_outputs,
    torch.ops.aten._embedding_bag_forward_only.default: _embedding_bag_outputs,
}

# Operators whose CUDA kernels allocate more than their outputs: the bytes of each temporary
# made before the outputs and after them; all are freed, in that order, before it returns.
_TEMPORARIES = {
    torch.ops.aten.layer_norm.default: _layer_norm,
    torch.ops.aten.linear.default: _linear,
    torch.ops.aten.conv2d.default: _patch_convolution,
    torch.ops.aten.conv2d.padding: _patch_convolution,  # padding given as "valid" (SigLIP)
}


def _tensors(values):
    """The tensors among an operator's arguments or results, lists and tuples of them included, in
    order (what pytree's leaves give for these, at a fraction of its cost per call)."""
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, list | tuple):
            yield from _tensors(value)


# Composite operators that reach the trace whole under inference_mode, although on CUDA they run as
# the operators they decompose into: einsum copies a strided operand before its bmm (DeepSeek-OCR's
# relative-position tables, matched to the byte in its H100 captures).
_DECOMPOSED = {torch.ops.aten.einsum.default}

# sdpa, which also reaches the trace whole under inference_mode: traced as the fused kernel runs it.
_SDPA = torch.ops.aten.scaled_dot_product_attention.default


_RETURNS_NEW: dict = {}  # operator -> whether its schema has it change no argument and return no view of one


def _returns_new(func) -> bool:
    new = _RETURNS_NEW.get(func)
    if new is None:
        schema = func._schema
        new = _RETURNS_NEW[func] = not schema.is_mutable and all(r.alias_info is None for r in schema.returns)
    return new


class _OffMeta(Exception):
    """A tensor argument off the meta device: an operator may read its values."""


_UNSEEN = object()


def _signature(values) -> tuple:
    """What a meta kernel can read of its arguments: each meta tensor's type, shape, strides, offset
    and dtype, each other value with its type (2 and 2.0 promote differently)."""
    signature = []
    for value in values:
        if isinstance(value, torch.Tensor):
            if not value.is_meta:
                raise _OffMeta
            signature.append((type(value), value.shape, value.stride(), value.storage_offset(), value.dtype))
        elif isinstance(value, list | tuple):
            signature.append((type(value), _signature(value)))
        else:
            signature.append((type(value), value))
    return tuple(signature)


def _make(container: type, tensors: tuple):
    """New meta tensors of the shapes, strides and types given, in ``container`` (a tensor: alone)."""
    made = [torch.empty_strided(shape, stride, dtype=dtype, device="meta") for shape, stride, dtype in tensors]
    return made[0] if container is torch.Tensor else container(made)


class AllocationTrace(TorchDispatchMode):
    """Records every storage an operator makes and when it dies: when the last tensor that refers to
    it is gone, its Python object (which lives as long as the storage does) reports its death."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[str, int, int]] = []
        self._live: dict[int, weakref.ref] = {}  # storage -> the reference that reports its death
        self._temporaries = 0  # keys of kernel temporaries count down from -1: never a storage's
        self._results: dict[tuple, tuple | None] = {}  # operator and arguments -> how to make its results

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing traced is compiled: no Dynamo guard around each operator

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is not None:
            return rule(self, func, args, kwargs)
        out = self._run(func, args, kwargs)
        self._count(out, args, kwargs)
        return out

    def _run(self, func, args, kwargs):
        """``func``'s results: what its meta kernel returns, or, for an operator that returns new tensors
        and has been run on meta tensors of the same shapes, strides and types with the same other
        arguments, the same results made anew. Such an operator reads nothing else of meta tensors,
        and its meta kernel may be Python that takes up to milliseconds (cat, clamp with tensor
        bounds), while a tower repeats each call in every layer."""
        if not _returns_new(func):
            return func(*args, **kwargs)
        try:
            key = (func, _signature((*args, *kwargs.items())))
            made = self._results.get(key, _UNSEEN)
        except (_OffMeta, TypeError):  # an argument with values the operator may read, or no key
            return func(*args, **kwargs)
        if made is _UNSEEN:
            out = func(*args, **kwargs)
            self._results[key] = self._recipe(out, args, kwargs)
            return out
        return func(*args, **kwargs) if made is None else _make(*made)

    def _recipe(self, out, args, kwargs) -> tuple | None:
        """How to make ``out`` anew (its container, each tensor's shape, strides and type), or None
        where it is not plain meta tensors with new storages of their own that ``_make`` makes the
        same to the byte."""
        if isinstance(out, torch.Tensor):
            tensors = [out]
        elif type(out) in (tuple, list):
            tensors = list(out)
        else:
            return None
        if not all(type(t) is torch.Tensor and t.is_meta and not t.storage_offset() for t in tensors):
            return None
        storages = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}
        given = {t.untyped_storage()._cdata for t in _tensors((*args, *kwargs.values()))}
        if len(storages) < len(tensors) or not storages.keys().isdisjoint(given | self._live.keys()):
            return None
        recipe = (type(out), tuple((t.shape, t.stride(), t.dtype) for t in tensors))
        made = _make(*recipe)
        remade = [t.untyped_storage().nbytes() for t in ([made] if isinstance(made, torch.Tensor) else made)]
        return recipe if remade == list(storages.values()) else None

    def _count(self, out, args, kwargs) -> None:
        """Record the storages among an operator's results that no tensor had before it."""
        given: set[int] | None = None  # the arguments' storages, found once an output may be one of them
        for tensor in (out,) if isinstance(out, torch.Tensor) else _tensors((out,)):
            storage = tensor.untyped_storage()
            if storage._cdata in self._live or storage.nbytes() == 0:
                continue  # a view of a storage counted, or none: CUDA's allocator is never asked for 0 bytes
            if given is None:
                given = {t.untyped_storage()._cdata for t in _tensors((*args, *kwargs.values()))}
            if storage._cdata not in given:  # else a view or in-place result of a weight or an input
                self._allocate(storage)

    def _with_temporaries(self, func, args, kwargs):
        before, after = _TEMPORARIES[func](args)
        made = [self._temporary(size) for size in before]
        out = self._run(func, args, kwargs)
        self._count(out, args, kwargs)
        made += [self._temporary(size) for size in after]
        self.events += [("free", key, 0) for key in made]
        return out

    def _in_kernel_order(self, func, args, kwargs):
        out = self._run(func, args, kwargs)
        self._count(_OUTPUT_ORDER[func](out), args, kwargs)
        return out

    def _decomposed(self, func, args, kwargs):
        with self:
            return func.decompose(*args, **kwargs)

    def _fused_attention(self, func, args, kwargs) -> torch.Tensor:
        """sdpa as it allocates on the GPU: in the captured forwards recorded on an H100 (torch
        2.11, half precision), each call made two 8-byte random-state tensors, its output laid out
        (batch, tokens, heads, head size) and handed back transposed, and a 256-byte buffer, then
        freed the 256 bytes and the random state; never the attention matrix, which sdpa's
        matrix-multiply path (what meta tensors would take) allocates. A boolean mask (Gemma 4's
        padding) is first turned into one of the query's type and the mask's shape, by way of two
        2-byte scalars freed at once, and that copy is freed last (tools/probe_masked_sdpa.py)."""
        query, value = args[0], args[2]
        attn_mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
        scalar, converted = query.element_size(), []
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            first, second = self._temporary(scalar), self._temporary(scalar)
            converted = [self._temporary(attn_mask.numel() * scalar)] if attn_mask.numel() else []
            self.events += [("free", second, 0), ("free", first, 0)]
        seed, offset = self._temporary(8), self._temporary(8)
        out = torch.empty(
            *query.shape[:-3], query.shape[-2], query.shape[-3], value.shape[-1], dtype=query.dtype, device=query.device
        ).transpose(-3, -2)
        if out.numel():
            self._allocate(out.untyped_storage())
        scratch = self._temporary(256)
        self.events += [("free", key, 0) for key in (scratch, seed, offset, *converted)]
        return out

    def _temporary(self, size: int) -> int:
        """A block the kernel allocates for itself."""
        self._temporaries -= 1
        self.events.append(("alloc", self._temporaries, size))
        return self._temporaries

    def _allocate(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        self.events.append(("alloc", key, storage.nbytes()))
        self._live[key] = weakref.ref(storage, lambda _, key=key: self._free(key))

    def _free(self, key: int) -> None:
        del self._live[key]
        self.events.append(("free", key, 0))


# What the trace does for the operators above instead of running them and counting their results.
_RULES = {
    **dict.fromkeys(_TEMPORARIES, AllocationTrace._with_temporaries),
    **dict.fromkeys(_OUTPUT_ORDER, AllocationTrace._in_kernel_order),
    **dict.fromkeys(_DECOMPOSED, AllocationTrace._decomposed),
    _SDPA: AllocationTrace._fused_attention,
}


@contextmanager
def _capturing():
    """Code that asks whether a CUDA graph is being captured is told yes, as it is when the GPU run
    captures the same forward: transformers then builds an attention mask without reading its
    contents on the host (Gemma 4's padding mask), which it could not do on meta tensors."""
    real = torch.cuda.is_current_stream_capturing
    torch.cuda.is_current_stream_capturing = lambda: True
    try:
        yield
    finally:
        torch.cuda.is_current_stream_capturing = real


def trace(run) -> tuple[list[tuple[str, int, int]], dict[int, int]]:
    """The allocation events of ``run()`` (on meta tensors), and its outputs' storages (key ->
    bytes), which stay allocated, as a captured graph keeps its outputs. It runs under
    inference_mode, where sdpa and einsum reach the trace whole."""
    with _capturing(), torch.inference_mode(), AllocationTrace() as recorder:
        outputs = run()
    events = list(recorder.events)
    kept = {
        t.untyped_storage()._cdata: t.untyped_storage().nbytes()
        for t in tree_leaves(outputs)
        if isinstance(t, torch.Tensor)
    }
    del outputs
    return events, kept
