"""The carried compile cache (training/compile_cache.py): a process that compiled a step with inductor leaves a file
from which a fresh process with an empty inductor cache compiles nothing (all hits, the same numbers), even when the
first one was killed right after compiling; and the file's save rules (what is written when) on torch's real format."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._functorch._aot_autograd.autograd_cache import AOTAutogradCacheArtifact
from torch._inductor.codecache import InductorCacheArtifact

from psp_hub.training.compile_cache import carried_compile_cache, read_artifacts, write_artifacts

ROOT = Path(__file__).resolve().parents[1]

# A compiled training-style step (training's compile options, forward and backward) inside the carried cache; with
# "kill" the process ends right after the step, skipping the block's final save (as `timeout -s KILL` would).
STEP = """
import json, os, sys, torch
from psp_hub.training.compilation import compile_in_place
from psp_hub.training.compile_cache import cache_counts, carried_compile_cache
class Net(torch.nn.Module):  # not an nn.Sequential: torch 2.11's Module.compile traces none of Sequential's frames
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.b(torch.nn.functional.gelu(self.a(x)))

with carried_compile_cache(sys.argv[1]):
    torch.manual_seed(0)
    net = compile_in_place(Net(), backend="inductor")
    out = net(torch.randn(4, 8))
    out.square().mean().backward()
    print(json.dumps({"out": out.tolist(), "grad": net.a.weight.grad.tolist(), **cache_counts()}), flush=True)
    if sys.argv[2] == "kill":
        os._exit(0)
"""


def _run_step(cache_file: Path, inductor_dir: Path, how: str) -> tuple[dict, str]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor_dir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", STEP, str(cache_file), how], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.slow
def test_a_fresh_process_loads_the_carried_cache_and_compiles_nothing(tmp_path):
    """Two real inductor compiles on CPU (the test took 23.6 s at load 3.5 on the 2-core machine): the first process,
    killed after its step, saved after its forward and again after its backward compile (torch's own blob, saved
    twice, loads without the forward graph); the second, with another, empty inductor cache dir, hits every graph."""
    cache_file = tmp_path / "carry" / "step.bin"
    cold, cold_log = _run_step(cache_file, tmp_path / "ic-cold", "kill")
    assert cold["fxgraph_miss"] >= 2 and cold["fxgraph_hit"] == 0 and cold["aot_miss"] == 1
    assert "saved" in cold_log and cache_file.is_file()
    saved = cache_file.read_bytes()
    artifacts = read_artifacts(saved)
    assert len(artifacts["inductor"]) >= 2 and len(artifacts["aot_autograd"]) == 1  # forward, backward; the entry
    warm, warm_log = _run_step(cache_file, tmp_path / "ic-warm", "exit")
    assert warm["fxgraph_hit"] >= 2 and warm["fxgraph_miss"] == 0, warm_log
    assert warm["aot_hit"] == 1 and warm["aot_miss"] == 0, warm_log
    assert warm["out"] == cold["out"] and warm["grad"] == cold["grad"]
    assert "loaded" in warm_log and "nothing new" in warm_log
    assert cache_file.read_bytes() == saved  # all hits: the file is left as it was


def _artifacts(*names: str) -> dict:
    """Artifacts in torch's real classes and format (contents are placeholders: these tests never load them)."""
    kinds = {"g": InductorCacheArtifact, "a": AOTAutogradCacheArtifact}
    out: dict = {}
    for name in names:
        cls = kinds[name[0]]
        out.setdefault(cls.type(), {})[name] = cls(name, name.encode() * 8)
    return out


def _names(path: Path) -> set[str]:
    return {key for by_key in read_artifacts(path.read_bytes()).values() for key in by_key}


class _Process:
    """Stands in for torch's record of what this process compiled or hit (save_cache_artifacts) and for the hot
    load (load_cache_artifacts), so the save rules can be followed without compiling."""

    def __init__(self, monkeypatch):
        self.used: dict = {}
        self.loaded: list[set[str]] = []
        monkeypatch.setattr(torch.compiler, "save_cache_artifacts", self.save)
        monkeypatch.setattr(torch.compiler, "load_cache_artifacts", self.load)

    def use(self, *names: str) -> None:
        for kind, by_key in _artifacts(*names).items():
            self.used.setdefault(kind, {}).update(by_key)

    def save(self):
        return (write_artifacts(self.used), None) if self.used else None

    def load(self, data: bytes):
        self.loaded.append({key for by_key in read_artifacts(data).values() for key in by_key})


def test_blobs_with_repeated_records_are_read_whole_and_written_as_one_record_per_kind():
    from torch.compiler._cache import _deserialize_single_cache, _serialize_single_cache
    from torch.utils._appending_byte_serializer import AppendingByteSerializer

    twice = AppendingByteSerializer(serialize_fn=_serialize_single_cache)  # what a second save_cache_artifacts makes
    for name in ("g1", "g2"):
        twice.extend([(InductorCacheArtifact.type(), list(_artifacts(name)["inductor"].values()))])
    merged = read_artifacts(twice.to_bytes())
    assert set(merged["inductor"]) == {"g1", "g2"}
    records = AppendingByteSerializer.to_list(write_artifacts(merged), deserialize_fn=_deserialize_single_cache)
    assert [(kind, [a.key for a in arts]) for kind, arts in records] == [("inductor", ["g1", "g2"])]


def test_save_rules(tmp_path, monkeypatch):
    path, log = tmp_path / "c.bin", io.StringIO()
    proc = _Process(monkeypatch)
    # a cold run: saves as it compiles; a clean end with nothing new after the last save writes nothing
    with carried_compile_cache(path, log=log) as cache:
        proc.use("g1", "a1")
        assert cache.save("after a compile") > 0 and _names(path) == {"g1", "a1"}
        assert cache.save("after a cache hit") == 0  # nothing new since
    # a warm run that hits only part of the file and adds nothing: the file stays whole
    proc.used = {}
    with carried_compile_cache(path, log=log) as cache:
        proc.use("g1")
    assert proc.loaded[-1] == {"g1", "a1"} and cache.saved_bytes == 0 and _names(path) == {"g1", "a1"}
    # a changed graph (g2 new): mid-run the loaded graphs stay, a clean end keeps only what the run used
    proc.used = {}
    with carried_compile_cache(path, log=log) as cache:
        proc.use("g2")
        cache.save("after a compile")
        assert _names(path) == {"g1", "a1", "g2"}
        proc.use("a2")
    assert _names(path) == {"g2", "a2"}
    # a run that fails after compiling something new keeps the loaded graphs as well
    proc.used = {}
    with pytest.raises(RuntimeError), carried_compile_cache(path, log=log):
        proc.use("g3")
        raise RuntimeError("out of memory")
    assert _names(path) == {"g2", "a2", "g3"}
    # a reader that must not write (another rank), and a file that is not a cache
    with carried_compile_cache(path, log=log, write=False):
        proc.use("g4")
    assert "g4" not in _names(path)
    path.write_bytes(b"not a cache")
    with carried_compile_cache(path, log=log):
        proc.used = {}
        proc.use("g5")
    assert _names(path) == {"g5"}
    text = log.getvalue()
    assert "not there: a cold compile" in text and "could not be read" in text and "nothing new" in text
    assert "fxgraph_hit=" in text and "MiB" in text


def _cache_parts(cwd: Path, call: str) -> subprocess.CompletedProcess:
    """Run one of train/device/compile_cache_parts.sh's functions in `cwd`, as the device scripts source them."""
    script = ROOT / "train/device/compile_cache_parts.sh"
    command = ["bash", "-c", f"set -uo pipefail; source {script}; {call}"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def test_the_cache_file_travels_in_call_sized_gzip_parts_and_comes_back_whole(tmp_path):
    # 60 MiB that gzip cannot shrink: five 14 MiB parts, more than one call's four; then a fresh machine's rebuild
    live = tmp_path / "there/runs/compile-cache/psp-256.bin"
    live.parent.mkdir(parents=True)
    original = os.urandom(60 << 20)
    live.write_bytes(original)
    there = tmp_path / "there"
    first = _cache_parts(there, "return_cache psp-256 ../out1 0")
    assert first.returncode == 0, first.stderr
    assert "in 5 parts; this call returns parts 0..3" in first.stdout
    assert "next call: bash train/device/return_compile_cache.sh psp-256 4" in first.stdout
    second = _cache_parts(there, "return_cache psp-256 ../out2 4")
    assert "returns parts 4..4" in second.stdout and "next call" not in second.stdout
    returned = [sorted((tmp_path / out / "compile-cache").iterdir()) for out in ("out1", "out2")]
    assert [p.name for p in returned[0]] == [f"psp-256.bin.gz.part-0{i}" for i in range(4)] + ["psp-256.bin.sha256"]
    assert [p.name for p in returned[1]] == ["psp-256.bin.gz.part-04", "psp-256.bin.sha256"]
    assert all(p.stat().st_size <= 15_000_000 for call in returned for p in call)  # what the device returns
    assert sum(p.stat().st_size for p in returned[0]) <= 64 << 20
    # each call's parts in a folder of their own (a carried folder replaces its namesake), reached through a
    # symlinked .carry as in the device's .gl checkout; "-4" sorts before "/" yet its part comes last
    carry = tmp_path / "here/.carry"
    for folder, call in (("compile-cache-0", returned[0]), ("compile-cache-4", returned[1])):
        (carry / folder).mkdir(parents=True)
        for path in call:
            (carry / folder / path.name).write_bytes(path.read_bytes())
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".carry").symlink_to(carry)
    rebuilt = _cache_parts(fresh, "COMPILE_CACHE=.carry/compile-cache carried_cache psp-256")
    assert rebuilt.stdout.strip() == "--compile-cache runs/compile-cache/psp-256.bin", rebuilt.stderr
    assert (fresh / "runs/compile-cache/psp-256.bin").read_bytes() == original
    # a part left behind: no file is rebuilt, so the run compiles cold instead of loading a truncated cache
    (fresh / "runs/compile-cache/psp-256.bin").unlink()
    (carry / "compile-cache-4/psp-256.bin.gz.part-04").unlink()
    partial = _cache_parts(fresh, "COMPILE_CACHE=.carry/compile-cache carried_cache psp-256")
    assert "4 carried parts are incomplete or do not match: compiling cold" in partial.stderr
    assert sorted(p.name for p in (fresh / "runs/compile-cache").iterdir()) == []
