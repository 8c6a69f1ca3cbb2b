"""A compile cache that travels between machines: torch's "mega-cache" (`torch.compiler.save_cache_artifacts` /
`load_cache_artifacts`, the same API in torch 2.11 and 2.14) as one file.

The device is a fresh machine every session, and inductor's on-disk cache dies with it, so a compiled step paid its
cold compile every session (prior-256: 154 s on the H200; psp-256: more than one 470 s process). The mega-cache holds
what a process compiled or loaded from a cache: AOTAutograd entries, inductor's FX graphs (on the GPU with their
Triton kernels, which inductor bundles into them; on the CPU the C++ source only, which g++ builds again) and
autotuning results. Loaded into an empty `TORCHINDUCTOR_CACHE_DIR` before the first compiled call, the same graphs on
the same torch, Triton and GPU are cache hits. Any change to the compiled code, shapes, config, inductor options or
versions changes the keys: those graphs miss and compile again (the counts in the log line say which happened).

torch's own blob cannot be written more than once a process: each `save_cache_artifacts` call after the first
appends a second record of a kind (inductor, aot_autograd) that `load_cache_artifacts` then reads over the first (it
keeps one record per kind), so a second save loads without the first one's graphs (seen on CPU: a compiled Linear's
forward graph lost, its AOTAutograd entry a miss). This module therefore writes its own merged blob, in torch's
format: one record per kind, each artifact once.

The file is rewritten (atomically) after every compilation that added to it and when the block ends, so a process
killed by its time limit still leaves every graph it finished. It never loses a loaded graph while a run is under way
(a run cut short, or one that has not reached a branch yet); a run that ends cleanly and compiled something new keeps
only what it used, which drops the graphs a code change made stale. A run that added nothing leaves the file alone.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch
from torch._dynamo.utils import counters
from torch.compiler._cache import (
    CacheArtifact,
    CacheArtifactManager,
    _deserialize_single_cache,
    _serialize_single_cache,
)
from torch.utils._appending_byte_serializer import AppendingByteSerializer

# (counter group, counter) pairs reported with every load and save: inductor's FX graph cache, AOTAutograd's
COUNTERS = {
    "fxgraph_hit": ("inductor", "fxgraph_cache_hit"),
    "fxgraph_miss": ("inductor", "fxgraph_cache_miss"),
    "fxgraph_bypass": ("inductor", "fxgraph_cache_bypass"),
    "aot_hit": ("aot_autograd", "autograd_cache_hit"),
    "aot_miss": ("aot_autograd", "autograd_cache_miss"),
    "aot_bypass": ("aot_autograd", "autograd_cache_bypass"),
}

Artifacts = dict[str, dict[str, CacheArtifact]]  # kind -> key -> artifact


def cache_counts() -> dict[str, int]:
    """This process's compile-cache hits, misses and bypasses so far (inductor FX graphs and AOTAutograd entries)."""
    return {name: int(counters[group][key]) for name, (group, key) in COUNTERS.items()}


def read_artifacts(data: bytes) -> Artifacts:
    """Every artifact of a mega-cache blob, however many records of a kind it has (torch's reader keeps the last)."""
    CacheArtifactManager._ensure_cache_artifacts_registered()
    merged: Artifacts = {}
    for kind, artifacts in AppendingByteSerializer.to_list(data, deserialize_fn=_deserialize_single_cache):
        merged.setdefault(kind, {}).update((a.key, a) for a in artifacts)
    return merged


def write_artifacts(artifacts: Artifacts) -> bytes:
    """A blob `torch.compiler.load_cache_artifacts` reads whole: one record per kind."""
    out = AppendingByteSerializer(serialize_fn=_serialize_single_cache)
    out.extend((kind, list(by_key.values())) for kind, by_key in artifacts.items())
    return out.to_bytes()


def _union(a: Artifacts, b: Artifacts) -> Artifacts:
    return {kind: {**a.get(kind, {}), **b.get(kind, {})} for kind in {*a, *b}}


def _keys(artifacts: Artifacts) -> set[tuple[str, str]]:
    return {(kind, key) for kind, by_key in artifacts.items() for key in by_key}


def _describe(size: int, artifacts: Artifacts) -> str:
    parts = ", ".join(f"{kind} {len(by_key)}" for kind, by_key in sorted(artifacts.items()))
    return f"{size / 2**20:.1f} MiB ({parts or 'no'} artifacts)"


def _counts_text() -> str:
    return " ".join(f"{k}={v}" for k, v in cache_counts().items() if v or not k.endswith("bypass"))


@dataclass
class CompileCache:
    """One mega-cache file: `load` it before the first compiled call, `save` whenever the process may have added to
    it. `write=False` (a non-main rank) loads without ever writing. `saved_bytes` is the file's size after the last
    save that wrote (0 if none did)."""

    path: Path
    log: TextIO | None = sys.stderr
    write: bool = True
    carried: Artifacts = field(default_factory=dict)  # the file as loaded
    written: set[tuple[str, str]] = field(default_factory=set)  # the keys of the file as it is now
    saved_bytes: int = 0

    def _say(self, text: str) -> None:
        if self.log is not None:
            print(f"compile cache: {text}", file=self.log, flush=True)

    def load(self) -> int:
        """Hot-load the file into inductor's and AOTAutograd's on-disk caches; returns the bytes read (0: no file)."""
        if not self.path.is_file():
            self._say(f"{self.path} not there: a cold compile")
            return 0
        data = self.path.read_bytes()
        try:
            self.carried = read_artifacts(data)
        except (RuntimeError, AssertionError, ValueError) as err:  # a bad checksum (truncated), another format
            self._say(f"{self.path} ({len(data) / 2**20:.1f} MiB) could not be read ({err!r}): a cold compile")
            return 0
        torch.compiler.load_cache_artifacts(write_artifacts(self.carried))
        self.written = _keys(self.carried)
        self._say(f"loaded {_describe(len(data), self.carried)} from {self.path}")
        return len(data)

    def save(self, when: str = "end", prune: bool = False) -> int:
        """Write the file if this process compiled anything the loaded file lacked; returns the bytes written.

        The file then holds what this process compiled or loaded from a cache, plus (unless `prune`) the loaded
        file's other graphs: a run cut short, or one that has not yet reached a branch, loses none of them. `prune`
        (at a clean end) drops those: after a change to the compiled code they are stale. Logs sizes and counts."""
        t0 = time.perf_counter()
        result = torch.compiler.save_cache_artifacts()  # None: no cached graph (nothing compiled, or not inductor)
        used = read_artifacts(result[0]) if result is not None else {}
        target = used if prune else _union(self.carried, used)
        keys = _keys(target)
        if not self.write or _keys(used) <= _keys(self.carried) or keys == self.written:
            if when == "end":  # not after each compile: a warm run would log a line per graph
                kept = f"{self.path} kept" if self.path.exists() else "no file written"
                self._say(f"{when}: nothing new, {kept}; {_counts_text()}")
            return 0
        data = write_artifacts(target)
        tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, self.path)  # atomic: a reader (or a kill mid-write) never sees half a file
        self.written, self.saved_bytes = keys, len(data)
        seconds = time.perf_counter() - t0  # a save per compilation: this says what they cost
        self._say(f"{when}: saved {_describe(len(data), target)} to {self.path} in {seconds:.2f} s; {_counts_text()}")
        return len(data)


@contextmanager
def carried_compile_cache(path: str | os.PathLike | None, log: TextIO | None = sys.stderr, write: bool = True):
    """Load the mega-cache at `path` (if there), save it after each compilation that adds to it and when the block
    ends: at a clean end only what this process used, after an exception that plus the loaded file's other graphs.
    `path=None` does nothing (yields None)."""
    if path is None:
        yield None
        return
    cache = CompileCache(Path(path), log, write)
    cache.load()
    handler = torch._dynamo.callback_handler
    compiles = [0]

    def after_compile(args) -> None:  # dynamo's end callback: a forward frame, or a lazily compiled backward graph
        compiles[0] += 1
        try:
            cache.save(f"after compile {compiles[0]} ({args.compile_id})")
        except OSError as err:  # a full disk must not stop training: the end of the block tries again
            cache._say(f"could not save after compile {compiles[0]}: {err}")

    handler.register_end_callback(after_compile)
    clean = False
    try:
        yield cache
        clean = True
    finally:
        handler.remove_end_callback(after_compile)
        cache.save("end", prune=clean)
