"""k samples of one chat prompt decoded together in one llama.cpp batch (EmbeddedModel.complete_many).

1. The request is formatted exactly as `Llama.create_chat_completion` formats it: the Llama's own
   chat handler runs against a stand-in that records what it would hand to `create_completion`
   (prompt tokens, stop strings, sampling settings) instead of generating.
2. The prompt is decoded once into sequence 0 of a second llama.cpp context, and its KV cells are
   copied to sequences 1..k-1 (`llama_memory_seq_cp`), so no sequence evaluates it again.
3. Each step samples one token per live sequence, each sequence with its own sampler chain built
   by llama-cpp-python's own `_init_sampler` (penalties, top-k, typical, top-p, min-p, temperature,
   dist) seeded with that sequence's seed, so a batched sample comes from the same distribution as
   a `complete()` sample; then all live sequences' tokens are decoded in one batch.
4. A sequence ends at an end-of-generation token, a stop string or max_tokens, by the same text
   rules as `create_completion`'s loop (`_Stopper`).

Why a second context: the Llama's own context has n_seq_max 1, and llama-cpp-python tracks what
its KV cache holds to reuse prompt prefixes, so writing other sequences there would corrupt the
single-sample path. The second context shares the model weights and has n_seq_max = k and
n_ctx = k x (prompt + max_tokens, rounded up): without kv_unified this llama.cpp version splits
n_ctx evenly between the sequences (llama_n_ctx_seq), each in its own KV stream, and seq_cp copies
the prompt's cells into each stream once. Not the unified pool (kv_unified), which would hold the
prompt once: measured on SmolLM2 with identical greedy sequences, its logits drifted from the
single-sequence ones by up to 0.9 after a few steps, while separate streams matched them exactly.

Anything this module cannot reproduce (grammars, logits processors, mirostat, more sequences than
MAX_SEQUENCES, a prompt that does not fit) raises `BatchUnavailable` with the reason; the caller
then samples sequentially.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

MAX_SEQUENCES = 16  # PolicySpec.samples is at most 16
CELL_ROUNDING = 256  # per-sequence room grows in steps, so similar requests reuse one context


class BatchUnavailable(Exception):
    """The batch path cannot serve this request exactly; the message says why."""


@dataclass
class Request:
    """What `create_completion` would have been given for one chat request."""

    prompt: list[int]
    stop: list[bytes]
    max_tokens: int
    sampling: dict[str, Any]  # the keyword arguments of Llama._init_sampler
    stopping_criteria: Any = None


@dataclass
class Sample:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" or "length", as create_completion reports it


@dataclass
class DecodeStats:
    """Where one generate call's time went (bench/batch_decode.py prints these)."""

    prompt_tokens: int
    steps: int  # batched decode steps after the prompt
    prompt_s: float
    decode_s: float  # sampling and batched decoding of the generated tokens


class _Captured(Exception):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("captured")
        self.kwargs = kwargs


class _Recorder:
    """Stands in for the Llama while its chat handler formats a request: everything is the
    Llama's except create_completion, which records its arguments and stops the handler."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, **kwargs: Any) -> Any:
        raise _Captured(kwargs)


# Settings create_completion accepts that change the distribution in ways this module does
# not rebuild: the request falls back when one is set.
_UNSUPPORTED = {"grammar": None, "logits_processor": None, "logit_bias": None, "mirostat_mode": 0,
                "suffix": None, "logprobs": None, "echo": False}


def prepare(llm: Any, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float,
            stop: list[str] | None = None) -> Request:
    """Format `messages` as the Llama's chat handler would, without generating anything."""
    from llama_cpp import Llama

    if not isinstance(llm, Llama):
        raise BatchUnavailable(f"the embedded model is a {type(llm).__name__}, not a llama_cpp.Llama")
    try:
        Llama.create_chat_completion(_Recorder(llm), messages=messages, max_tokens=max_tokens,
                                     temperature=temperature, stop=stop)
    except _Captured as captured:
        kw = captured.kwargs
    else:
        raise BatchUnavailable("the chat handler does not generate through create_completion")
    for name, neutral in _UNSUPPORTED.items():
        if kw.get(name, neutral) not in (neutral, [], {}):
            raise BatchUnavailable(f"the request sets {name}, which the batch sampler does not rebuild")
    prompt = kw["prompt"]
    if not isinstance(prompt, list):  # create_completion would add BOS/EOS to a text prompt
        raise BatchUnavailable("the chat handler passed a text prompt, not tokens")
    n_ctx = llm.n_ctx()
    if len(prompt) >= n_ctx:
        raise BatchUnavailable(f"the prompt ({len(prompt)} tokens) does not fit n_ctx {n_ctx}")
    # create_completion's own budget rule: unlimited or too long means up to the context's end.
    budget = kw.get("max_tokens") or 0
    if budget <= 0 or budget + len(prompt) >= n_ctx:
        budget = n_ctx - len(prompt)
    stops = kw.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    sampling = {name: kw[name] for name in ("top_k", "top_p", "min_p", "typical_p", "repeat_penalty",
                                            "frequency_penalty", "presence_penalty", "tfs_z")
                if name in kw}
    sampling["temp"] = kw.get("temperature", temperature)
    return Request(prompt=list(prompt), stop=[s.encode("utf-8") for s in stops], max_tokens=budget,
                   sampling=sampling, stopping_criteria=kw.get("stopping_criteria"))


class _Stopper:
    """One sequence's end rules, in the order of create_completion's generation loop: an
    end-of-generation token ends it (not included); a stop string ends it and cuts the text there
    (checked only once the text does not end inside a UTF-8 character, as upstream); max_tokens
    ends it with finish reason "length"."""

    def __init__(self, llm: Any, request: Request) -> None:
        self._llm = llm
        self._request = request
        self.tokens: list[int] = []
        self.text = b""
        self.finish = ""
        self._multibyte = 0

    def push(self, token: int) -> bool:
        """Take the sequence's next token; True when the sequence has ended."""
        import llama_cpp

        llm, request = self._llm, self._request
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            return self._end(llm.detokenize(self.tokens, prev_tokens=request.prompt), "stop")
        self.tokens.append(token)
        all_text = llm.detokenize(self.tokens, prev_tokens=request.prompt)
        for k, char in enumerate(all_text[-3:]):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    self._multibyte = num - k
        if self._multibyte > 0:
            self._multibyte -= 1
            return False
        found = [s for s in request.stop if s in all_text]
        if found:
            return self._end(all_text[: all_text.index(found[0])], "stop")
        if len(self.tokens) >= request.max_tokens:
            return self._end(all_text, "length")
        return False

    def stop_early(self) -> bool:
        """The chat format's stopping criteria, asked with what the sequence has evaluated."""
        criteria = self._request.stopping_criteria
        if criteria is None:
            return False
        import numpy as np

        evaluated = np.array(self._request.prompt + self.tokens, dtype=np.intc)
        if criteria(evaluated, np.zeros(1, dtype=np.single)):
            return self._end(self._llm.detokenize(self.tokens, prev_tokens=self._request.prompt), "stop")
        return False

    def _end(self, text: bytes, finish: str) -> bool:
        self.text, self.finish = text, finish
        return True

    def sample(self) -> Sample:
        return Sample(self.text.decode("utf-8", errors="ignore"), len(self.tokens), self.finish or "length")


class BatchDecoder:
    """A second llama.cpp context on one Llama's weights, for decoding many sequences at once.
    Get it with `decoder_for(llm)`: one per Llama, freed before the Llama's model."""

    def __init__(self, llm: Any, max_sequences: int = MAX_SEQUENCES) -> None:
        import llama_cpp

        self._llm = llm
        self.max_sequences = min(max_sequences, int(llama_cpp.llama_max_parallel_sequences()))
        self._ctx: Any = None
        self._batch: Any = None
        self.cells = 0  # per sequence
        self.sequences = 0
        self.lock = threading.Lock()

    def max_cells(self) -> int:
        """KV cells the batch context may hold in all: twice the Llama's own context."""
        return 2 * self._llm.n_ctx()

    def _ensure(self, size: int, n: int) -> None:
        import llama_cpp
        from llama_cpp import _internals as internals

        if self._ctx is not None and self.sequences == n and self.cells >= size:
            return
        self.close()
        llm = self._llm
        # Copy the Llama's own context settings (threads, RoPE, KV types, flash attention), so the
        # two contexts compute the same logits; change only the sequence layout and size.
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = size * n
        params.n_seq_max = n
        params.kv_unified = False
        params.n_batch = max(llm.n_batch, n)
        params.n_ubatch = max(llm.context_params.n_ubatch, n)
        try:
            self._ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
        except ValueError as exc:
            raise BatchUnavailable(f"llama.cpp could not create a batch context of {n} x {size} cells") from exc
        if llama_cpp.llama_n_ctx_seq(self._ctx.ctx) < size:
            self.close()
            raise BatchUnavailable(f"the batch context gives each sequence fewer than {size} cells")
        if getattr(llm, "_lora_adapter", None) is not None:  # the policy's LoRA applies here too
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(llm._lora_adapter)
            scales = (llama_cpp.ctypes.c_float * 1)(llm.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self._ctx.ctx, adapters, 1, scales):
                self.close()
                raise BatchUnavailable("could not apply the LoRA adapter to the batch context")
        self._batch = internals.LlamaBatch(n_tokens=params.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.cells, self.sequences = size, n

    def _sampler(self, sampling: dict[str, Any], seed: int) -> Any:
        # llama-cpp-python's own chain builder reads the seed from the Llama; it is set for the
        # build only and put back (every create_completion sets it again anyway).
        llm = self._llm
        saved = llm._seed
        llm._seed = seed
        try:
            return llm._init_sampler(**sampling)
        finally:
            llm._seed = saved

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants logits) entries as one llama.cpp batch."""
        import llama_cpp

        batch = self._batch.batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        code = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if code != 0:
            raise BatchUnavailable(f"llama_decode returned {code} for a batch of {len(entries)}")

    def generate(self, request: Request, seeds: list[int]) -> tuple[list[Sample], DecodeStats]:
        """One sample per seed (sequence j uses seeds[j]), and where the time went."""
        import llama_cpp

        n = len(seeds)
        if n > self.max_sequences:
            raise BatchUnavailable(f"{n} samples exceed the batch context's {self.max_sequences} sequences")
        size = -(-(len(request.prompt) + request.max_tokens) // CELL_ROUNDING) * CELL_ROUNDING
        if n * size > self.max_cells():
            raise BatchUnavailable(f"{n} samples of up to {request.max_tokens} tokens after a "
                                   f"{len(request.prompt)}-token prompt need {n} x {size} KV cells, "
                                   f"more than {self.max_cells()} (2 x n_ctx)")
        with self.lock:
            self._ensure(size, n)
            llama_cpp.llama_memory_clear(self._ctx.memory, True)
            started = time.perf_counter()
            chunk = self._ctx.params.n_batch
            prompt = request.prompt
            for start in range(0, len(prompt), chunk):  # the shared prompt, once, into sequence 0
                part = prompt[start:start + chunk]
                last = start + len(part) == len(prompt)
                self._decode([(t, start + i, 0, last and i == len(part) - 1) for i, t in enumerate(part)])
            for seq in range(1, n):
                llama_cpp.llama_memory_seq_cp(self._ctx.memory, 0, seq, -1, -1)
            prompt_s = time.perf_counter() - started
            samplers = [self._sampler(request.sampling, seed) for seed in seeds]
            try:
                stoppers, steps = self._steps(request, samplers, chunk)
            finally:
                for sampler in samplers:
                    sampler.close()
            stats = DecodeStats(len(prompt), steps, prompt_s, time.perf_counter() - started - prompt_s)
        return [s.sample() for s in stoppers], stats

    def _steps(self, request: Request, samplers: list[Any], chunk: int) -> tuple[list[_Stopper], int]:
        """Sample one token per live sequence, decode them all in one batch, until all ended."""
        prompt = request.prompt
        stoppers = [_Stopper(self._llm, request) for _ in samplers]
        live = list(range(len(samplers)))
        rows = {seq: (len(prompt) - 1) % chunk for seq in live}  # all start from the prompt's last row
        steps = 0
        while live:
            entries = []
            for seq in live:
                if stoppers[seq].stop_early():
                    continue
                token = samplers[seq].sample(self._ctx, rows[seq])
                if not stoppers[seq].push(token):
                    entries.append((token, len(prompt) + len(stoppers[seq].tokens) - 1, seq, True))
            if not entries:
                break
            self._decode(entries)
            rows = {seq: i for i, (_, _, seq, _) in enumerate(entries)}
            live = [seq for _, _, seq, _ in entries]
            steps += 1
        return stoppers, steps

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        self.cells = self.sequences = 0


_DECODERS: "weakref.WeakKeyDictionary[Any, BatchDecoder]" = weakref.WeakKeyDictionary()
_DECODERS_LOCK = threading.Lock()


def decoder_for(llm: Any) -> BatchDecoder:
    """The Llama's batch decoder (made on first use; its context is freed before the model)."""
    with _DECODERS_LOCK:
        decoder = _DECODERS.get(llm)
        if decoder is None:
            decoder = _DECODERS[llm] = BatchDecoder(llm)
        return decoder
