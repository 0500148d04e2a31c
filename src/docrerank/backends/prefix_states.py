"""Saved llama.cpp states of evaluated prompts, so a page's text is evaluated once for every stage that asks about it.

llama.cpp keeps one evaluated prompt (its KV cache); the next prompt reuses only their common prefix. A pipeline
asks about a page in several stages (its positives, their rephrasings, its negatives are each verified with
the page first), with other pages and generation prompts in between, so the page's text was evaluated again in
each. Before a prompt that drops most of what is evaluated, the evaluated state is saved here (its KV cells,
tens of MB for a page); a later prompt that shares a longer prefix with a saved state than with the current
one starts from that state. Least recently used states go first when the capacity is reached.

llama-cpp-python's own ``LlamaRAMCache`` saves after every completion and copies the model's logits buffer
with each state (hundreds of MB for a 150k vocabulary); here only the context's KV data is kept.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict

import numpy as np

__all__ = ["PrefixStates"]

MIN_GAIN = 64  # tokens a saved state must spare over the current prefix to be worth loading


def _common(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class PrefixStates:
    """Up to ``capacity_bytes`` of saved prompt states for one ``llama_cpp.Llama``, by recency."""

    def __init__(self, capacity_bytes: int):
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[bytes, tuple[np.ndarray, bytes]] = OrderedDict()
        self._size = 0
        self.saved = 0
        self.loaded = 0

    def prepare(self, llm, tokens: list[int] | np.ndarray) -> None:
        """Before ``llm`` evaluates ``tokens``: save what it holds if most of it is about to be dropped, and load
        the saved state that shares the longest prefix with ``tokens`` when it spares at least ``MIN_GAIN``."""
        if self.capacity_bytes <= 0:
            return
        tokens = np.asarray(tokens, dtype=np.intc)
        held = np.array(llm.input_ids[: llm.n_tokens], dtype=np.intc)
        common = _common(held, tokens)
        if common < len(held) // 2:  # leaving this prompt: keep it for a later one that shares it
            self._save(llm, held)
        best, best_common = None, common
        for key, (saved_tokens, _) in self._states.items():
            shared = _common(saved_tokens, tokens)
            if shared >= best_common + MIN_GAIN:
                best, best_common = key, shared
        if best is not None:
            self._load(llm, best)

    def _save(self, llm, held: np.ndarray) -> None:
        key = held.tobytes()
        if key in self._states:
            self._states.move_to_end(key)
            return
        if len(held) < MIN_GAIN:
            return
        import llama_cpp

        size = llama_cpp.llama_state_get_size(llm._ctx.ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(llm._ctx.ctx, buffer, size)
        data = bytes(buffer)[:written]
        if len(data) > self.capacity_bytes:
            return
        self._states[key] = (held, data)
        self._size += len(data)
        self.saved += 1
        while self._size > self.capacity_bytes:
            _, (_, dropped) = self._states.popitem(last=False)
            self._size -= len(dropped)

    def _load(self, llm, key: bytes) -> None:
        import llama_cpp

        saved_tokens, data = self._states[key]
        self._states.move_to_end(key)
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_set_data(llm._ctx.ctx, buffer, len(data)) != len(data):
            raise RuntimeError("llama.cpp did not take a saved prompt state")
        llm.input_ids[: len(saved_tokens)] = saved_tokens
        llm.n_tokens = len(saved_tokens)
        llm._requires_eval = True  # a prompt equal to the saved one is evaluated again for fresh logits
        self.loaded += 1
