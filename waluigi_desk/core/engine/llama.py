"""The local engine: a GGUF model through llama-cpp-python.

Notes for the next engineer (measured or read in llama-cpp-python 0.3.x):
- We do not call ``create_chat_completion(stream=True)``: it re-detokenizes the whole reply on
  every token (cost grows with the square of the reply length). Instead we render the GGUF's own
  chat template (llama-cpp-python's sandboxed ``Jinja2ChatFormatter``), tokenize once and drive
  ``Llama.generate``, decoding each token's bytes with an incremental UTF-8 decoder.
- ``Llama.generate`` keeps the KV cache of the longest common prefix with the previous prompt,
  so a follow-up turn only evaluates the new tokens. We count the tokens actually evaluated by
  wrapping ``Llama.eval``; that wrapper also feeds the prompt in slices so Stop is honoured
  during a long prompt too, not only between generated tokens.
- ``n_ctx`` is always passed (the library default is 512) and clamped to the trained context;
  ``verbose=False`` keeps llama.cpp quiet; ``n_threads`` defaults to all cores (the library's
  half-the-cores default cost 7-15% speed here).
"""

from __future__ import annotations

import codecs
import os
import random
import threading
import time
from typing import Any, Sequence

from waluigi_desk.core.engine import ChatMessage, EngineInfo, GenParams, GenResult, OnText
from waluigi_desk.core.models import ModelInfo, read_gguf_header, resolve_model
from waluigi_desk.errors import EngineError, ModelError

# llama.cpp's architecture names (vendor/llama.cpp/src/llama-arch.cpp of the pinned version)
KNOWN_ARCHITECTURES = set(
    """clip llama llama4 deci falcon grok gpt2 gptj gptneox mpt baichuan starcoder refact bert
    modern-bert nomic-bert nomic-bert-moe neo-bert jina-bert-v2 jina-bert-v3 eurobert bloom stablelm
    qwen qwen2 qwen2moe qwen2vl qwen3 qwen3moe qwen3next qwen3vl qwen3vlmoe qwen35 qwen35moe qwen4exp
    phi2 phi3 phimoe plamo plamo2 plamo3 codeshell orion internlm2 minicpm minicpm3 gemma gemma2
    gemma3 gemma3n gemma4 gemma4-assistant gemma-embedding starcoder2 mamba mamba2 maple jamba
    falcon-h1 xverse command-r cohere2 cohere2moe dbrx olmo olmo2 olmoe muse-glimmer openelm arctic
    deepseek deepseek2 deepseek2-ocr deepseek32 deepseek4 chatglm glm4 glm4moe glm-dsa bitnet t5
    t5encoder jais jais2 nemotron nemotron_h nemotron_h_moe exaone exaone4 exaone-moe rwkv6
    rwkv6qwen2 rwkv7 arwkv7 granite granitemoe granitehybrid graniteswitch granite_swa chameleon
    wavtokenizer-dec plm bailingmoe bailingmoe2 bailingmoe3 dots1 dots3note arcee afmoe laguna
    ernie4_5 ernie4_5-moe hunyuan-moe hunyuan-dense hunyuan_vl hy_v3 hy_v4 smollm3 gpt-oss lfm2
    lfm2moe dream smallthinker llada llada-moe seed_oss grovemoe apertus minimax-01 hrm_text
    minimax-m2 minimax-m3 cogvlm rnd1 pangu-embedded mistral3 eagle3 dflash mistral4 paddleocr mimo2
    step35 spark2_5 llama-embed maincoder kimi-linear kimi-k3 glm5-next talkie mellum nanbeige
    qwen3tts pockettts""".split()
)
NOT_CHAT_ARCHITECTURES = {"clip", "bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert",
                          "jina-bert-v2", "jina-bert-v3", "eurobert", "t5encoder", "wavtokenizer-dec",
                          "gemma-embedding", "llama-embed"}

# used when a GGUF carries no chat template of its own
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROMPT_SLICE = 128  # prompt tokens evaluated between two checks of the cancel flag


class _Cancelled(Exception):
    pass


def gpu_offload_supported() -> bool:
    import llama_cpp

    try:
        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # pragma: no cover - very old builds
        return False


def resolve_gpu_layers(setting: Any, supported: bool) -> int:
    """``auto`` means every layer when offload is supported, else none."""
    if setting == "auto":
        return -1 if supported else 0
    n = int(setting)
    return n if supported else 0


def device_text(gpu_layers: int, supported: bool) -> str:
    if not supported:
        return "CPU only: this llama-cpp-python build has no GPU support"
    if gpu_layers == 0:
        return "CPU (GPU offload available but set to 0 layers)"
    return "GPU: all layers offloaded" if gpu_layers < 0 else f"GPU: {gpu_layers} layers offloaded"


class LlamaEngine:
    def __init__(
        self,
        model_path: str | None = None,
        *,
        n_ctx: int = 4096,
        gpu_layers: Any = "auto",
        n_threads: int = 0,
        flash_attn: bool = True,
    ):
        self.model: ModelInfo = resolve_model(model_path)  # validates the header; ModelError if bad
        self.requested_n_ctx = n_ctx
        self.gpu_layers_setting = gpu_layers
        self.n_threads = n_threads or (os.cpu_count() or 1)
        self.flash_attn = flash_attn
        self._llm: Any = None
        self._formatter: Any = None
        self._eval_count = 0
        self._pieces: dict[int, bytes] = {}
        self._cancel: threading.Event | None = None
        ctx_train = self.model.context_length or n_ctx
        self.info = EngineInfo(
            kind="llama",
            model_name=self.model.name,
            model_path=self.model.path,
            n_ctx=max(64, min(n_ctx, ctx_train)),
        )

    @classmethod
    def from_settings(cls, settings: Any, model_path: str | None = None) -> "LlamaEngine":
        return cls(
            model_path or settings.get("model_path") or None,
            n_ctx=settings.get("n_ctx"),
            gpu_layers=settings.get("gpu_layers"),
            n_threads=settings.get("n_threads"),
            flash_attn=settings.get("flash_attn"),
        )

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        m = read_gguf_header(self.model.path)  # again: the file may have changed since
        if m.architecture not in KNOWN_ARCHITECTURES:
            raise ModelError(
                f"{os.path.basename(m.path)} uses the architecture '{m.architecture}', which this "
                "llama-cpp-python build does not support."
            )
        if m.architecture in NOT_CHAT_ARCHITECTURES:
            raise ModelError(
                f"{os.path.basename(m.path)} is a '{m.architecture}' model (an encoder or embedding "
                "model), not a chat model."
            )
        supported = gpu_offload_supported()
        layers = resolve_gpu_layers(self.gpu_layers_setting, supported)
        try:
            llm = llama_cpp.Llama(
                model_path=m.path,
                n_ctx=self.info.n_ctx,
                n_gpu_layers=layers,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                flash_attn=self.flash_attn,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {os.path.basename(m.path)}: the file is damaged or not a "
                f"model it supports ({exc})."
            ) from exc
        template = llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        eos = llm.token_eos()
        bos = llm.token_bos()
        try:
            formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
            formatter(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
        except Exception as exc:  # jinja2 TemplateError, SecurityError, ...
            llm.close()
            raise ModelError(
                f"{os.path.basename(m.path)} has a chat template that cannot be used safely "
                f"({type(exc).__name__}: {str(exc)[:200]})."
            ) from exc
        self._llm, self._formatter = llm, formatter
        original_eval = llm.eval

        def counting_eval(tokens: Sequence[int]) -> None:
            # feed the prompt in slices so Stop works during a long prompt, and count what is
            # really evaluated (prefix reuse leaves the shared part out)
            tokens = list(tokens)
            for i in range(0, max(len(tokens), 1), PROMPT_SLICE):
                if self._cancel is not None and self._cancel.is_set() and len(tokens) > 1:
                    raise _Cancelled()
                part = tokens[i : i + PROMPT_SLICE]
                original_eval(part)
                self._eval_count += len(part)

        llm.eval = counting_eval  # type: ignore[method-assign]
        self.info.gpu_offload = supported and layers != 0
        self.info.gpu_layers = layers
        self.info.device_text = device_text(layers, supported)
        self.info.extra = {
            "architecture": m.architecture,
            "quantization": m.quantization,
            "n_ctx_train": m.context_length,
            "n_threads": self.n_threads,
            "flash_attn": self.flash_attn,
        }

    @property
    def llm(self) -> Any:
        if self._llm is None:
            raise EngineError("The model is not loaded yet.")
        return self._llm

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    # -- tokens -------------------------------------------------------------------------------
    def format_prompt(self, messages: Sequence[ChatMessage]) -> str:
        if self._formatter is None:
            raise EngineError("The model is not loaded yet.")
        try:
            return self._formatter(messages=[dict(m) for m in messages]).prompt
        except Exception as exc:  # jinja2 SecurityError / TemplateError on a path the load check missed
            raise ModelError(
                f"{os.path.basename(self.model.path)} has a chat template that failed on this "
                f"conversation ({type(exc).__name__}: {str(exc)[:200]})."
            ) from exc

    def tokenize_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        prompt = self.format_prompt(messages)
        toks = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        bos = self.llm.token_bos()
        if len(toks) > 1 and toks[0] == bos and toks[1] == bos:
            toks = toks[1:]
        return toks

    def _piece(self, tok: int) -> bytes:
        """The bytes of one token (cached; the library's own helper pads to 32 bytes)."""
        b = self._pieces.get(tok)
        if b is None:
            import ctypes

            import llama_cpp

            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self.llm._model.vocab, tok, buf, size, 0, False)
                if n >= 0:
                    b = buf.raw[:n]
                    break
                size = -n + 1
            self._pieces[tok] = b
        return b

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        return len(self.llm.tokenize(text.encode("utf-8", errors="replace"), add_bos=False, special=False))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenize_prompt(messages))

    # -- generation ---------------------------------------------------------------------------
    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenParams,
        on_text: OnText,
        cancel: threading.Event,
    ) -> GenResult:
        llm = self.llm
        t0 = time.perf_counter()
        tokens = self.tokenize_prompt(messages)
        n_ctx = llm.n_ctx()
        room = n_ctx - len(tokens)
        if room < 1:
            raise EngineError(
                f"The prompt is {len(tokens)} tokens, more than the context of {n_ctx} tokens."
            )
        max_tokens = min(params.max_tokens, room)
        llm.set_seed(params.seed if params.seed >= 0 else random.randrange(0, 2**31 - 1))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        import llama_cpp

        model = llm._model
        vocab = model.vocab
        is_eog = llama_cpp.llama_vocab_is_eog
        out: list[str] = []
        n_out, ttft, reason = 0, 0.0, "length"
        self._eval_count = 0
        prompt_evaluated = 0
        self._cancel = cancel
        gen = llm.generate(tokens, temp=params.temperature, top_p=params.top_p, top_k=40,
                           min_p=0.05, repeat_penalty=1.0, reset=True)
        try:
            for tok in gen:
                if n_out == 0:
                    ttft = time.perf_counter() - t0
                    prompt_evaluated = self._eval_count
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if is_eog(vocab, tok):
                    reason = "stop"
                    break
                piece = decoder.decode(self._piece(tok))
                n_out += 1
                if piece:
                    out.append(piece)
                    on_text(piece)
                if n_out >= max_tokens:
                    reason = "length"
                    break
        except _Cancelled:
            reason = "cancelled"
            prompt_evaluated = self._eval_count
        finally:
            gen.close()
            self._cancel = None
        tail = decoder.decode(b"", final=True)
        if tail:
            out.append(tail)
            on_text(tail)
        return GenResult(
            text="".join(out),
            finish_reason=reason,
            prompt_tokens=len(tokens),
            prompt_tokens_evaluated=prompt_evaluated,
            completion_tokens=n_out,
            ttft_s=ttft,
            total_s=time.perf_counter() - t0,
        )
