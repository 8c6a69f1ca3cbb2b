"""Peak memory of a block of code: allocated GPU memory on CUDA, sampled process RSS on CPU.

The CPU figure is the whole process (weights included), like `max_memory_allocated` on the GPU; freed heap is
handed back to the OS first (glibc `malloc_trim`) so a previous, larger block does not inflate the next one.
"""

from __future__ import annotations

import ctypes
import threading

import psutil
import torch
from typing_extensions import Self


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the RSS may then include heap freed earlier
        pass


class PeakMemory:
    """`with PeakMemory(device) as pm: ...` then `pm.mib`: the peak during the block, in MiB."""

    def __init__(self, device: torch.device, interval_s: float = 0.002):
        self.device, self.interval_s, self.mib = torch.device(device), interval_s, float("nan")
        self.start_mib = float("nan")  # CPU: the RSS when the block began (after the trim)
        self._stop = threading.Event()
        self._peak = 0
        self._readings = 0
        self._taken = threading.Condition()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            rss = proc.memory_info().rss
            with self._taken:
                self._peak = max(self._peak, rss)
                self._readings += 1
                self._taken.notify_all()
            self._stop.wait(self.interval_s)

    def wait_for_reading(self) -> None:
        """CPU: block until the sampler has read the RSS after this call, so what is resident now counts in the
        peak however long a busy machine keeps the sampler waiting (no effect on CUDA)."""
        if self._thread is None:
            return
        with self._taken:
            target = self._readings + 2  # the reading under way may have started before this call
            self._taken.wait_for(lambda: self._readings >= target or not self._thread.is_alive())

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _trim_heap()
            self._peak = psutil.Process().memory_info().rss
            self.start_mib = self._peak / 2**20
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, psutil.Process().memory_info().rss)
            self.mib = self._peak / 2**20
