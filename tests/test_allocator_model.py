"""The caching-allocator model: its rules one by one, and real recorded captures replayed through it."""

import gzip
import pickle
import random
from pathlib import Path

import pytest

from encgraph_profiler.allocator_model import (
    EXPANDABLE_ADDRESS_SPACE,
    LARGE_BUFFER,
    SMALL_BUFFER,
    SMALL_SIZE,
    AllocatorSettings,
    CachingAllocator,
    _unlist,
    allocation_size,
    parse_allocator_conf,
    replay_recorded_captures,
    round_size,
)

MiB = 1 << 20
SNAPSHOTS = sorted((Path(__file__).parent / "data" / "memory_snapshot").glob("*.pickle.gz"))


@pytest.mark.parametrize(
    "size, rounded, segment",
    [
        (1, 512, 2 * MiB),
        (512, 512, 2 * MiB),
        (513, 1024, 2 * MiB),
        (MiB, MiB, 2 * MiB),
        (MiB + 1, MiB + 512, 20 * MiB),
        (10 * MiB - 512, 10 * MiB - 512, 20 * MiB),
        (10 * MiB, 10 * MiB, 10 * MiB),
        (11 * MiB + 1, 11 * MiB + 512, 12 * MiB),
    ],
)
def test_rounding_and_segment_sizes(size, rounded, segment):
    assert round_size(size) == rounded and allocation_size(rounded) == segment


def test_best_fit_split_and_merge():
    model = CachingAllocator()
    a = model.malloc(3 * MiB)  # a 20 MiB segment, split: 17 MiB stay free
    b = model.malloc(4 * MiB)  # from the same segment's rest
    assert [e.size for e in model.events] == [20 * MiB] and b.address == a.address + 3 * MiB
    c = model.malloc(12 * MiB + 1)  # 13 MiB left in the segment: fits, and 1 MiB - 512 remains, too little to split
    assert c.address == b.address + 4 * MiB and c.size == 13 * MiB and len(model.events) == 1
    model.free(b)
    model.free(a)  # merges with b: one free 7 MiB block at the front
    d = model.malloc(6 * MiB)
    assert d.address == a.address and len(model.events) == 1
    model.free(c)
    model.free(d)
    model.empty_cache()
    assert [e.action for e in model.events] == ["segment_alloc", "segment_free"] and model.pool(
        None
    ).reserved_bytes == 0


def test_small_requests_pack_into_2_mib_segments_apart_from_large_ones():
    model = CachingAllocator()
    small = [model.malloc(512 * 1024) for _ in range(5)]  # four fill a segment, the fifth opens another
    assert [e.size for e in model.events] == [2 * MiB, 2 * MiB]
    assert small[1].address == small[0].address + 512 * 1024
    model.malloc(MiB + 512)  # a large request never takes a small segment's free space
    assert [e.size for e in model.events] == [2 * MiB, 2 * MiB, 20 * MiB]


def test_private_pools_do_not_share_blocks():
    model = CachingAllocator()
    first = model.malloc(4 * MiB, "graph 1")
    model.free(first, "graph 1")
    model.malloc(4 * MiB, "graph 2")
    assert [e.size for e in model.events] == [20 * MiB, 20 * MiB]


def test_expandable_segments_map_pages_at_the_end_of_one_segment():
    model = CachingAllocator(settings=AllocatorSettings(expandable_segments=True))
    a = model.malloc(3 * MiB)  # one 20 MiB page mapped; split even though under 1 MiB would remain below
    b = model.malloc(17 * MiB - 512)  # the rest of the page but 512 bytes: still split off
    assert [(e.action, e.size) for e in model.events] == [("segment_map", 20 * MiB)]
    assert b.address == a.address + 3 * MiB and b.size == 17 * MiB - 512
    c = model.malloc(30 * MiB)  # the free 512 bytes that end the mapped part grow by two pages
    assert c.address == b.address + b.size and [e.size for e in model.events] == [20 * MiB, 40 * MiB]
    assert model.pool(None).reserved_bytes == 60 * MiB and len(model.pool(None).segments) == 1
    model.free(a)
    model.free(b)  # merges with a: 20 MiB - 512 free at the front
    d = model.malloc(5 * MiB)
    assert d.address == a.address and len(model.events) == 2
    small = model.malloc(4096)  # small requests have their own segment, mapped 2 MiB at a time
    assert [e.size for e in model.events][-1] == 2 * MiB and small.small


def test_expandable_best_fit_keeps_the_growable_end_for_last():
    model = CachingAllocator(settings=AllocatorSettings(expandable_segments=True))
    front = model.malloc(6 * MiB)
    model.malloc(12 * MiB)  # 2 MiB of the 20 MiB page stay free at the end, which could grow
    model.free(front)  # 6 MiB free at the front
    # plain best fit would take the 2 MiB at the end; the allocator ranks it by what it could grow to
    assert model.malloc(MiB + MiB // 2).address == front.address


def test_max_split_size_keeps_oversized_blocks_whole_and_for_large_requests():
    model = CachingAllocator(settings=parse_allocator_conf("max_split_size_mb:40"))
    big = model.malloc(50 * MiB)
    model.free(big)
    small = model.malloc(30 * MiB)  # the free 50 MiB block is oversized for it: a new segment
    assert [e.size for e in model.events] == [50 * MiB, 30 * MiB] and small.address != big.address
    whole = model.malloc(45 * MiB)  # within 20 MiB of the request: taken whole, not split
    assert whole.address == big.address and whole.size == 50 * MiB and len(model.events) == 2
    model.free(whole)
    assert model.malloc(29 * MiB).address != big.address  # under the limit never takes it
    plain = CachingAllocator()
    plain.free(plain.malloc(50 * MiB))
    assert plain.malloc(45 * MiB).size == 45 * MiB  # PyTorch's default splits it


class _Reference:
    """The model's rules written the plain way, for one pool: each segment a list of [address, size,
    free] blocks in address order, the best fit found by scanning them all (``scan``)."""

    def __init__(self, settings: AllocatorSettings):
        self.settings, self.place = settings, CachingAllocator._counting_addresses()
        self.segments: dict[bool, list[list[list]]] = {True: [], False: []}  # small? -> segments
        self.mapped_end: dict[bool, int] = {}  # small? -> where the expandable segment's mapped part ends

    def scan(self, small: bool) -> list[tuple[int, int]]:
        """Every free block of the small or large pool as (size, address), best first."""
        return sorted((size, address) for s in self.segments[small] for address, size, free in s if free)

    def malloc(self, size: int) -> int:
        size, limit = round_size(size), self.settings.max_split_size
        small, expandable = size <= SMALL_SIZE, self.settings.expandable_segments
        ends = {id(s[-1]) for s in self.segments[small] if expandable}  # the block ending a mapped part
        fits = sorted((id(b) in ends, b[1], b[0], b) for s in self.segments[small] for b in s if b[2] and b[1] >= size)
        block = fits[0][3] if fits else None
        if block is not None and limit is not None:
            taken = block[1] < limit if size < limit else block[1] < size + self.settings.max_non_split_rounding
            block = block if taken else None
        if block is None and expandable:  # map pages at the end, growing its free block if it has one
            if small not in self.mapped_end:
                self.segments[small].append([])
                self.mapped_end[small] = self.place(EXPANDABLE_ADDRESS_SPACE, small)
            segment, page = self.segments[small][0], SMALL_BUFFER if small else LARGE_BUFFER
            if not segment or not segment[-1][2]:
                segment.append([self.mapped_end[small], 0, True])
            block = segment[-1]
            pages = page * -(-(size - block[1]) // page)
            block[1] += pages
            self.mapped_end[small] += pages
        elif block is None:
            segment_size = allocation_size(size)
            block = [self.place(segment_size, small), segment_size, True]
            self.segments[small].append([block])
        rest = block[1] - size
        split = rest >= 512 if small or expandable else rest > SMALL_SIZE and (limit is None or size < limit)
        segment = next(s for s in self.segments[small] if any(b is block for b in s))
        if split:
            segment.insert(segment.index(block) + 1, [block[0] + size, rest, True])
            block[1] = size
        block[2] = False
        return block[0]

    def free(self, address: int, small: bool) -> None:
        segment = next(s for s in self.segments[small] if any(b[0] == address for b in s))
        i = next(i for i, b in enumerate(segment) if b[0] == address)
        segment[i][2] = True
        if i + 1 < len(segment) and segment[i + 1][2]:
            segment[i][1] += segment.pop(i + 1)[1]
        if i > 0 and segment[i - 1][2]:
            segment[i - 1][1] += segment.pop(i)[1]


@pytest.mark.parametrize(
    "conf", ["", "expandable_segments:True", "max_split_size_mb:40", "expandable_segments:True,max_split_size_mb:40"]
)
def test_best_fit_picks_the_block_a_plain_scan_picks(conf):
    """On random requests and frees, the model's sorted free sets, found by bisection, hold exactly
    the free blocks a plain scan of every segment finds, and each request lands where the plainly
    written rules put it."""
    settings = parse_allocator_conf(conf)
    for seed in range(20):
        rng, model, reference = random.Random(seed), CachingAllocator(settings=settings), _Reference(settings)
        live = []
        for _ in range(400):
            if live and rng.random() < 0.45:
                block = live.pop(rng.randrange(len(live)))
                reference.free(block.address, block.small)
                model.free(block)
            else:
                size = rng.choice([rng.randint(1, MiB), rng.randint(MiB, 12 * MiB), rng.randint(12 * MiB, 70 * MiB)])
                live.append(model.malloc(size))
                assert live[-1].address == reference.malloc(size), (seed, len(live))
            for small in (True, False):
                assert [entry[:2] for entry in model.pool(None).free[small]] == reference.scan(small), seed


@pytest.mark.parametrize(
    "conf, error",
    [
        ("roundup_power2_divisions:[256:1,>:4]", "roundup_power2_divisions is not modelled"),
        ("backend:cudaMallocAsync", "backend:cudaMallocAsync is not modelled"),
        ("max_split_size_mb:19", "max_split_size_mb takes a whole number of MiB, at least 20"),
        ("max_split_size_mb:abc:", "max_split_size_mb:abc is followed by ':'"),
        ("max_split_size_mb:128:", "max_split_size_mb:128 is followed by ':'; settings are separated by commas"),
        ("max_split_size_mb:\uff11\uff12\uff18", "max_split_size_mb takes a whole number of MiB"),
        ("expandable_segments:true", "expandable_segments takes True or False"),
        ("garbage_collection_threshold:1.5", "garbage_collection_threshold takes a fraction above 0 and below 1"),
        # What PyTorch's allocator refuses ("Unrecognized key", a key without its value, an empty item).
        ("foo:bar", "PyTorch knows no setting 'foo'"),
        ("garbage", "PyTorch knows no setting 'garbage'"),
        ("Max_Split_Size_MB:128", "PyTorch knows no setting 'Max_Split_Size_MB'"),
        ("max_split_size_mb:128,,expandable_segments:True", "PyTorch knows no setting ','"),
        ("max_split_size_mb", "max_split_size_mb needs a value"),
        ("backend:foo", "backend:foo is not an allocator"),
        # PyTorch takes the last of two values; predict asks which was meant.
        ("max_split_size_mb:128,max_split_size_mb:256", "max_split_size_mb is given twice, as 128 and 256"),
    ],
)
def test_settings_the_model_does_not_cover_are_refused(conf, error):
    with pytest.raises(ValueError, match=error.replace("[", r"\[")):
        parse_allocator_conf(conf)


def test_settings_are_read_as_pytorch_reads_them():
    assert parse_allocator_conf("") == AllocatorSettings()
    assert parse_allocator_conf(
        "expandable_segments:True, max_split_size_mb:128,max_non_split_rounding_mb:64,garbage_collection_threshold:0.6"
    ) == AllocatorSettings(True, 128 * MiB, 64 * MiB)
    # Spaces dropped, a trailing comma, the same value twice, the smallest split size: as PyTorch 2.9+.
    assert parse_allocator_conf(" max_split_size_mb : 20 , max_split_size_mb:20,") == AllocatorSettings(False, 20 * MiB)


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.name)
def test_recorded_captures_are_reproduced_exactly(path):
    """Every request of every capture in a real recorded history lands at the address the
    allocator gave it, and the model makes the same graph-pool segments in the same order."""
    replay = replay_recorded_captures(pickle.loads(gzip.decompress(path.read_bytes())))
    assert replay.allocations > 500
    assert replay.misplaced == 0
    assert replay.predicted_segments == replay.recorded_segments


def test_a_block_is_taken_out_of_the_free_set_only_if_it_is_there():
    allocator = CachingAllocator()
    held, freed = allocator.malloc(2 * MiB), allocator.malloc(4 * MiB)
    allocator.free(freed)
    free = next(entries for entries in allocator.pool(None).free.values() if entries)
    before = list(free)
    with pytest.raises(RuntimeError, match="is not free"):
        _unlist(free, held)  # bisection finds a free block's place; it is not the block asked for
    assert free == before
