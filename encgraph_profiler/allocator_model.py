"""A model of PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp, the native
backend, with ``expandable_segments`` and ``max_split_size_mb`` as set, no
``roundup_power2_divisions``), exact to the byte for one stream. No torch.

The rules, each as the allocator applies it:

- Every request is rounded up to a multiple of 512 bytes, 512 at least (``round_size``).
- Requests of up to 1 MiB are served from the small pool, larger ones from the large pool; each
  pool is private to a graph's capture (``graph_pool_handle``) or the process's default pool.
- A request takes the smallest free block of its pool that is large enough, the lowest address
  among equal sizes (``get_free_block``: the free set is ordered by stream, size, address).
- With no such block, a new segment is allocated (``alloc_block``): 2 MiB for a small request,
  20 MiB for a large one under 10 MiB, otherwise the request rounded up to 2 MiB
  (``get_allocation_size``).
- The block handed out is the front of the chosen block; the rest stays free as a block of its
  own when more than 1 MiB remains in the large pool, or at least 512 bytes in the small pool
  (``should_split``); otherwise the whole block is handed out.
- With ``max_split_size_mb`` set, a block of that size or more is never split for a request, is
  not handed to a smaller request at all, and goes to a request of that size or more only if it
  is less than ``max_non_split_rounding_mb`` (20 MiB unless set) larger; otherwise a new segment
  is made (``get_free_block``, ``should_split``).
- A freed block merges with its free neighbours in the same segment (``free_block``,
  ``try_merge_blocks``). In a graph's private pool a block freed during capture is reused by
  later requests of the same capture as in any pool.
- ``empty_cache`` returns every segment that is wholly free (``release_cached_blocks``); a private
  pool's segments go back only once its graphs are gone.

With ``expandable_segments:True`` (graph pools included, as in PyTorch 2.11) each pool has one
segment for its small requests and one for its large ones, reserved as address space and mapped
page by page at its end (2 MiB pages for the small pool, 20 MiB for the large one):

- A request that no free block fits maps pages at the segment's end: as many as it needs beyond
  the free block that ends the mapped part, if there is one, which it then extends
  (``try_allocate_expandable_block``, ``find_expandable_block``, ``map_block``).
- Best fit ranks that last free block by the size it could grow to, so any other free block large
  enough is taken first (``get_free_block``).
- A large block is split whenever at least 512 bytes remain (``should_split``).
- Mapped and unmapped parts never merge; ``empty_cache`` (which would unmap free pages) is not
  modelled for these segments: a graph pool is not emptied while its graphs live.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field

MIN_BLOCK = 512  # kMinBlockSize
SMALL_SIZE = 1 << 20  # kSmallSize: the largest request of the small pool
SMALL_BUFFER = 2 << 20  # kSmallBuffer: a small pool's segment
LARGE_BUFFER = 20 << 20  # kLargeBuffer: the segment of a 1-10 MiB request
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
ROUND_LARGE = 2 << 20  # kRoundLarge


def round_size(size: int) -> int:
    return MIN_BLOCK if size < MIN_BLOCK else MIN_BLOCK * -(-size // MIN_BLOCK)


def allocation_size(size: int) -> int:
    """The segment a request of ``size`` (rounded) makes when no free block fits."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * -(-size // ROUND_LARGE)


@dataclass(frozen=True)
class AllocatorSettings:
    """The allocator settings the model covers, as PYTORCH_CUDA_ALLOC_CONF sets them."""

    expandable_segments: bool = False
    max_split_size: int | None = None  # bytes; None: unlimited, PyTorch's default
    max_non_split_rounding: int = LARGE_BUFFER


# Settings that change how a pool is laid out and that the model does not cover.
UNMODELLED = ("roundup_power2_divisions",)

# Every key PyTorch's CUDA allocator reads (c10/core/AllocatorConfig.cpp and
# c10/cuda/CUDAAllocatorConfig.cpp, 2.9 to 2.13); it refuses any other ("Unrecognized key").
# Those not read here leave the encoder graphs' private pools as they are.
_KEYS = """max_split_size_mb max_non_split_rounding_mb garbage_collection_threshold roundup_power2_divisions
    expandable_segments pinned_use_background_threads pinned_reserve_segment_size_mb backend
    release_lock_on_cudamalloc release_lock_on_hipmalloc pinned_use_cuda_host_register pinned_use_hip_host_register
    pinned_num_register_threads graph_capture_record_stream_reuse per_process_memory_fraction"""
KNOWN_KEYS = frozenset(_KEYS.split())


def allocator_conf() -> str:
    """The allocator settings a CUDA run of this process reads: PYTORCH_CUDA_ALLOC_CONF, and
    PYTORCH_ALLOC_CONF where that is unset."""
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
    return conf if conf is not None else os.environ.get("PYTORCH_ALLOC_CONF", "")


def _conf_options(conf: str) -> dict[str, str]:
    """``key:value,key:value`` read as PyTorch's tokenizer reads it: spaces dropped, ``,:[]`` tokens of
    their own, each key followed by ``:`` and a value (a ``[...]`` list for roundup_power2_divisions),
    then ``,`` or the end. Raises ValueError where PyTorch raises."""
    tokens = [t for t in re.split(r"([,:\[\]])", conf.replace(" ", "")) if t]
    options: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        key = tokens[i]
        if key not in KNOWN_KEYS:
            raise ValueError(f"PyTorch knows no setting {key!r}")
        if tokens[i + 1 : i + 2] != [":"] or i + 2 >= len(tokens) or tokens[i + 2] in ",:]":
            raise ValueError(f"{key} needs a value, as {key}:VALUE")
        end = i + 3
        if tokens[i + 2] == "[":
            end = tokens.index("]", i) + 1 if "]" in tokens[i:] else len(tokens)
        value = "".join(tokens[i + 2 : end])
        if key in options and options[key] != value:
            raise ValueError(f"{key} is given twice, as {options[key]} and {value} (PyTorch would take the last)")
        options[key] = value
        if end < len(tokens) and tokens[end] != ",":
            raise ValueError(f"{key}:{value} is followed by {tokens[end]!r}; settings are separated by commas")
        i = end + 1
    return options


def parse_allocator_conf(conf: str) -> AllocatorSettings:
    """``conf`` (PYTORCH_CUDA_ALLOC_CONF's syntax) read as PyTorch reads it. Raises ValueError,
    naming the setting, for one the model does not cover or a value PyTorch would reject."""
    options = _conf_options(conf)
    unmodelled = [key for key in UNMODELLED if key in options]
    backend = options.get("backend", "native")
    if backend not in ("native", "cudaMallocAsync"):
        raise ValueError(f"backend:{backend} is not an allocator; PyTorch's are native and cudaMallocAsync")
    if backend != "native":
        unmodelled.append(f"backend:{backend}")
    if unmodelled:
        raise ValueError(f"{', '.join(unmodelled)} is not modelled")
    for key in ("expandable_segments", "release_lock_on_cudamalloc", "pinned_use_cuda_host_register"):
        if options.get(key, "False") not in ("True", "False"):
            raise ValueError(f"{key} takes True or False")
    threshold = options.get("garbage_collection_threshold", "0.5")
    if not re.fullmatch(r"[0-9]*\.?[0-9]+", threshold) or not 0 < float(threshold) < 1:
        raise ValueError("garbage_collection_threshold takes a fraction above 0 and below 1")

    def megabytes(key: str) -> int | None:
        if key not in options:
            return None
        if not re.fullmatch(r"[0-9]+", options[key]) or int(options[key]) < LARGE_BUFFER >> 20:
            raise ValueError(f"{key} takes a whole number of MiB, at least {LARGE_BUFFER >> 20}")
        return int(options[key]) << 20

    rounding = megabytes("max_non_split_rounding_mb")
    return AllocatorSettings(
        options.get("expandable_segments") == "True",
        megabytes("max_split_size_mb"),
        LARGE_BUFFER if rounding is None else rounding,
    )


@dataclass(eq=False)
class Block:
    address: int
    size: int
    small: bool  # in the small pool
    segment: int  # the address of its segment
    allocated: bool = False
    mapped: bool = True  # False for the unmapped end of an expandable segment
    prev: Block | None = None
    next: Block | None = None


@dataclass
class Pool:
    """One pool (a graph's private pool, or the default one) of one stream: its free blocks by
    size then address, small and large apart, its segments, and with expandable segments the
    unmapped end of each."""

    free: dict[bool, list[tuple[int, int, Block]]] = field(default_factory=lambda: {True: [], False: []})
    segments: dict[int, int] = field(default_factory=dict)  # address -> bytes reserved (mapped)
    unmapped: dict[bool, Block] = field(default_factory=dict)

    @property
    def reserved_bytes(self) -> int:
        return sum(self.segments.values())


@dataclass(frozen=True)
class SegmentEvent:
    action: str  # "segment_alloc", "segment_free" or (expandable segments) "segment_map"
    address: int
    size: int


EXPANDABLE_ADDRESS_SPACE = 1 << 40  # more than any GPU's memory: the unmapped end never runs out


class CachingAllocator:
    """``malloc`` and ``free`` as the allocator does them; every segment it makes, maps or returns
    is appended to ``events``. Segment addresses come from ``next_segment_address`` (a callable
    taking the size and whether the segment is for small requests), so that a replay of a recorded
    trace can place segments where the driver did."""

    def __init__(self, next_segment_address=None, settings: AllocatorSettings = AllocatorSettings()):
        self.settings = settings
        self.pools: dict[object, Pool] = defaultdict(Pool)  # made on first use
        self.events: list[SegmentEvent] = []
        self._next = next_segment_address or self._counting_addresses()

    @staticmethod
    def _counting_addresses():
        """Each new segment below the last, as the driver hands out addresses in the recorded
        traces: where equal free blocks tie, the lower address (the newer segment) is taken."""
        bottom = [1 << 46]

        def next_address(size: int, small: bool) -> int:
            bottom[0] -= -(-size // ROUND_LARGE) * ROUND_LARGE
            return bottom[0]

        return next_address

    def pool(self, key) -> Pool:
        return self.pools[key]

    def malloc(self, size: int, pool_key=None) -> Block:
        pool, size = self.pool(pool_key), round_size(size)
        small = size <= SMALL_SIZE
        free = pool.free[small]
        index = bisect.bisect_left(free, (size, -1))
        if self.settings.expandable_segments and index + 1 < len(free) and not _mapped_after(free[index][2]):
            index += 1  # the free block that ends the mapped part ranks by what it could grow to
        if index < len(free) and self._may_take(free[index][2], size):
            _, _, block = free.pop(index)
        elif self.settings.expandable_segments:
            block = self._map(pool, size, small)
        else:
            segment = allocation_size(size)
            address = self._next(segment, small)
            pool.segments[address] = segment
            self.events.append(SegmentEvent("segment_alloc", address, segment))
            block = Block(address, segment, small, address)
        remaining = block.size - size
        if (
            (remaining >= MIN_BLOCK)
            if small or self.settings.expandable_segments
            else (remaining > SMALL_SIZE and self._splits(size))
        ):
            rest = Block(block.address + size, remaining, small, block.segment, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            bisect.insort(free, (rest.size, rest.address, rest))
        block.allocated = True
        return block

    def _may_take(self, block: Block, size: int) -> bool:
        """Whether the best-fitting free block may serve ``size`` under ``max_split_size``."""
        limit = self.settings.max_split_size
        if limit is None:
            return True
        return block.size < (limit if size < limit else size + self.settings.max_non_split_rounding)

    def _splits(self, size: int) -> bool:
        return self.settings.max_split_size is None or size < self.settings.max_split_size

    def _map(self, pool: Pool, size: int, small: bool) -> Block:
        """Map pages at the end of the pool's expandable segment until the free block ending its
        mapped part (taken out of the free set) holds ``size``; that block."""
        end = pool.unmapped.get(small)
        if end is None:
            address = self._next(EXPANDABLE_ADDRESS_SPACE, small)
            end = pool.unmapped[small] = Block(address, EXPANDABLE_ADDRESS_SPACE, small, address, mapped=False)
            pool.segments[address] = 0
        last = end.prev if end.prev is not None and not end.prev.allocated else None
        have = 0 if last is None else last.size
        page = SMALL_BUFFER if small else LARGE_BUFFER
        mapped = page * -(-(size - have) // page)
        self.events.append(SegmentEvent("segment_map", end.address, mapped))
        pool.segments[end.segment] += mapped
        if last is None:
            last = Block(end.address, 0, small, end.segment, prev=end.prev, next=end)
            if end.prev is not None:
                end.prev.next = last
            end.prev = last
        else:
            _unlist(pool.free[small], last)
        last.size += mapped
        end.address += mapped
        end.size -= mapped
        return last

    def free(self, block: Block, pool_key=None) -> None:
        pool = self.pool(pool_key)
        free = pool.free[block.small]
        block.allocated = False
        for neighbour in (block.prev, block.next):
            if neighbour is None or neighbour.allocated or not neighbour.mapped:
                continue
            _unlist(free, neighbour)
            if neighbour is block.prev:
                block.address, block.prev = neighbour.address, neighbour.prev
                if neighbour.prev is not None:
                    neighbour.prev.next = block
            else:
                block.next = neighbour.next
                if neighbour.next is not None:
                    neighbour.next.prev = block
            block.size += neighbour.size
        bisect.insort(free, (block.size, block.address, block))

    def empty_cache(self, pool_key=None) -> None:
        """Return every wholly free segment of the pool (expandable segments excepted: see above)."""
        pool = self.pool(pool_key)
        for small in (True, False):
            for entry in list(pool.free[small]):
                _, _, block = entry
                if block.prev is None and block.next is None:
                    pool.free[small].remove(entry)
                    size = pool.segments.pop(block.address)
                    self.events.append(SegmentEvent("segment_free", block.address, size))


def _unlist(free: list[tuple[int, int, Block]], block: Block) -> None:
    """Take ``block`` out of its pool's free set, found by bisection: (size, address) is unique."""
    at = bisect.bisect_left(free, (block.size, block.address))
    if at == len(free) or free[at][2] is not block:
        raise RuntimeError(f"allocator model: the block of {block.size:,} bytes at {block.address:#x} is not free")
    del free[at]


def _mapped_after(block: Block) -> bool:
    return block.next is None or block.next.mapped


@dataclass(frozen=True)
class Replay:
    """A recorded capture replayed through the model: what it predicted against what happened."""

    allocations: int  # requests made in the graph pools
    misplaced: int  # of those, how many the model placed at another address than the allocator did
    predicted_segments: tuple[int, ...]  # sizes of the segments the model made, in order
    recorded_segments: tuple[int, ...]  # sizes of the segments the allocator made, in order

    @property
    def exact(self) -> bool:
        return self.misplaced == 0 and self.predicted_segments == self.recorded_segments


def replay_recorded_captures(snapshot: dict) -> Replay:
    """Feed the requests and frees that a recorded history (``profile --memory-snapshot``) shows in
    the graph pools to the model, one capture after another, and compare its segments and block
    addresses with the allocator's. Graph-pool events are those of a capture (category
    ``budget=...``) at an address inside a segment the snapshot lists in a private pool; capture
    also makes a few requests in the default pool (the graph's RNG state), which are left out. The
    model places each new segment at the address the allocator's next graph-pool segment got, so
    that blocks of equal size are ordered as the allocator orders them; with expandable segments
    (as the snapshot's allocator settings say) it compares the pages mapped, in order."""
    private = sorted(
        (s["address"], s["total_size"], s["segment_type"] == "small")
        for s in snapshot["segments"]
        if tuple(s["segment_pool_id"]) != (0, 0)
    )
    starts = [address for address, _, _ in private]

    def in_graph_pool(event: dict) -> bool:
        i = bisect.bisect_right(starts, event["addr"]) - 1
        return (
            str(event.get("category", "")).startswith("budget=")
            and i >= 0
            and event["addr"] < private[i][0] + private[i][1]
        )

    events = [e for trace in snapshot["device_traces"] for e in trace]
    settings = parse_allocator_conf(snapshot.get("allocator_settings", {}).get("PYTORCH_CUDA_ALLOC_CONF", ""))
    expandable = settings.expandable_segments
    recorded = [
        e for e in events if e["action"] == ("segment_map" if expandable else "segment_alloc") and in_graph_pool(e)
    ]
    if expandable:  # the pool's one segment for small requests and one for large: where their pages begin
        bases = {small: address for address, _, small in reversed(private)}

        def place(size, small):
            return bases[small]
    else:  # more segments than recorded: a mismatch
        addresses, beyond = iter([e["addr"] for e in recorded]), CachingAllocator._counting_addresses()

        def place(size, small):
            return next(addresses, None) or beyond(size, small)

    model = CachingAllocator(place, settings)
    live: dict[int, Block] = {}
    allocations = misplaced = 0
    for event in events:
        if event["action"] == "alloc" and in_graph_pool(event):
            block = model.malloc(event["size"], "graph")
            allocations += 1
            misplaced += block.address != event["addr"]
            live[event["addr"]] = block
        elif event["action"] == "free_completed" and event["addr"] in live:
            model.free(live.pop(event["addr"]), "graph")
    return Replay(allocations, misplaced, tuple(e.size for e in model.events), tuple(e["size"] for e in recorded))
