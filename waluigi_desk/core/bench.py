"""``waluigi-desk bench``: the speed and memory figures of issue 5, measured in one run.

Every figure is measured here and compared with its target in the output (``targets``: value,
target, pass); no test asserts a time. A figure that cannot be measured yet (the window or the
detectors not installed) is ``null`` with the reason in ``notes``.

Figures:
- ``startup_to_window_s``: the app spawned offscreen with ``WALUIGI_DESK_QUIT_AFTER_SHOW=1``;
  it prints ``window shown in X s`` and quits (X is what we report).
- ``model_load_s``: ``LlamaEngine.load()`` of the model.
- ``ttft_s_turn1`` / ``ttft_s_turn10``: time to first token at turn 1 and 10 of one conversation
  through :class:`ChatSession` (prefix reuse keeps turn 10 close to turn 1).
- ``tokens_per_s_app``: generation speed through ChatSession (engine + store flushes + callbacks);
  ``tokens_per_s_raw``: a plain llama-cpp-python ``Llama.generate`` loop on a second ``Llama`` of
  the same file and settings, same prompt, seed and sampler, in the same run, alternated with the
  app runs; ``overhead_ratio`` = raw / app (best of the repetitions each).
- ``detector_ms_p50`` / ``_p95``: ``DetectorService.score_text`` (combined verdict) on replies of
  20-150 words, after a warm-up.
- ``ui_max_stall_ms``: longest gap of a 10 ms QTimer heartbeat while a reply streams and is
  scored in the window (``ui.app.create_app``), in a child process (the probe lives in
  ``commands/bench.py``: core never imports Qt).
- ``fts_search_ms``: median ``Store.search`` over 100,000 stored messages (10,000 with --quick).
- ``open_conversation_ms``: median ``Store.messages`` of a 10,000-message conversation.
- ``peak_rss_mb``: peak resident memory of this process (``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

TARGETS: dict[str, tuple[str, float]] = {
    "overhead_ratio": ("<=", 1.03),
    "ttft_ratio_turn10_turn1": ("<=", 1.5),
    "detector_ms_p95": ("<=", 20.0),
    "ui_max_stall_ms": ("<=", 50.0),
    "startup_to_window_s": ("<=", 2.0),
    "fts_search_ms": ("<=", 50.0),
    "open_conversation_ms": ("<=", 200.0),
}

WORDS = (
    "the a of to and in is it you that was for on are with as his they be at one have this from "
    "or had by hot word but what some we can out other were all there when up use your how said an "
    "each she which do their time if will way about many then them write would like so these her "
    "long make thing see him two has look more day could go come did number sound no most people "
    "my over know water than call first who may down side been now find dragon castle river garden "
    "lighthouse kitchen bread music winter summer honest helpful kind answer question story"
).split()

STREAM_PROMPT = ("Write a long, detailed story about a lighthouse keeper who finds a message in a "
                 "bottle. Use many paragraphs.")
TURN_QUESTIONS = [
    "What is the capital of France?", "Tell me one fact about it.", "And what about its river?",
    "Name a famous bridge there.", "Who built it?", "When was that?", "What else happened then?",
    "Give me a short summary.", "What should I visit first?", "Thanks, any last tip?",
]


def _pct(values: list[float], q: float) -> float:
    vs = sorted(values)
    if not vs:
        return float("nan")
    k = (len(vs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(vs) - 1)
    return vs[lo] + (vs[hi] - vs[lo]) * (k - lo)


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / 1024 if sys.platform == "darwin" else r / 1024


SKIPPABLE = {"startup", "ui", "detectors", "model", "fts", "open"}


class Bench:
    def __init__(self, settings: Any, *, quick: bool = False, progress: Callable[[str], None] | None = None,
                 skip: set[str] | frozenset[str] = frozenset()):
        self.settings = settings
        self.quick = quick
        self.skip = set(skip)
        self.progress = progress or (lambda msg: None)
        self.out: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        self.tmp = tempfile.TemporaryDirectory(prefix="waluigi-bench-")
        self.engine: Any = None

    # -- helpers ------------------------------------------------------------------------------
    def _step(self, name: str, fn: Callable[[], None], *keys: str, part: str = "") -> None:
        if part and part in self.skip:
            for k in keys:
                self.out[k] = None
            self.notes[name] = f"skipped (--skip {part})"
            return
        self.progress(f"{name}…")
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a figure that fails is reported, not fatal
            for k in keys:
                self.out.setdefault(k, None)
            self.notes[name] = f"failed: {type(exc).__name__}: {exc}"
        self.progress(f"{name} done in {time.perf_counter() - t0:.1f} s")

    def _store(self, name: str):
        from waluigi_desk.core.store import Store

        return Store(Path(self.tmp.name) / name)

    # -- figures ------------------------------------------------------------------------------
    def startup(self) -> None:
        import importlib.util

        if importlib.util.find_spec("waluigi_desk.ui.app") is None:
            self.out["startup_to_window_s"] = None
            self.notes["startup_to_window_s"] = "the window (waluigi_desk/ui/app.py) is not built yet"
            return
        env = dict(os.environ, WALUIGI_DESK_QUIT_AFTER_SHOW="1", QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
                   WALUIGI_DESK_HOME=str(Path(self.tmp.name) / "startup-home"))
        args = [sys.executable, "-m", "waluigi_desk"]
        model = self.settings.get("model_path")
        if model:
            args += ["--model", model]
        runs, wall = [], []
        for _ in range(1 if self.quick else 3):
            t0 = time.perf_counter()
            p = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
            wall.append(time.perf_counter() - t0)
            m = re.search(r"window shown in ([0-9.]+) ?s", p.stdout + p.stderr)
            if p.returncode != 0 or not m:
                self.out["startup_to_window_s"] = None
                self.notes["startup_to_window_s"] = (
                    f"the app did not report 'window shown in X s' (exit {p.returncode}): "
                    f"{(p.stderr or p.stdout).strip()[-300:]}")
                return
            runs.append(float(m.group(1)))
        self.out["startup_to_window_s"] = round(statistics.median(runs), 3)
        self.out["startup_process_wall_s"] = round(statistics.median(wall), 3)

    def load_model(self) -> None:
        from waluigi_desk.core.engine.llama import LlamaEngine

        t0 = time.perf_counter()
        e = LlamaEngine.from_settings(self.settings)
        e.load()
        self.out["model_load_s"] = round(time.perf_counter() - t0, 3)
        self.engine = e
        self.out["model"] = e.info.model_name
        self.out["model_path"] = e.info.model_path
        self.out["device"] = e.info.device_text
        self.out["gpu_offload"] = e.info.gpu_offload
        self.out["n_ctx"] = e.info.n_ctx
        self.out["n_threads"] = e.n_threads

    def ttft(self) -> None:
        from waluigi_desk.core.chat import ChatSession

        s = self._store("ttft.db")
        try:
            self.settings.override("max_tokens", 24 if self.quick else 48)
            self.settings.override("temperature", 0.0)
            self.settings.override("seed", 1)
            session = ChatSession(s, self.engine, self.settings)
            cid = session.new_conversation()
            ttfts, evaluated, prompt = [], [], []
            for q in TURN_QUESTIONS:
                t = session.send(cid, q, lambda p: None)
                if t.error or t.result is None:
                    raise RuntimeError(t.error)
                ttfts.append(t.result.ttft_s)
                evaluated.append(t.result.prompt_tokens_evaluated)
                prompt.append(t.result.prompt_tokens)
        finally:
            s.close()
        self.out["ttft_s_turn1"] = round(ttfts[0], 4)
        self.out["ttft_s_turn10"] = round(ttfts[-1], 4)
        self.out["ttft_ratio_turn10_turn1"] = round(ttfts[-1] / ttfts[0], 3) if ttfts[0] > 0 else None
        self.out["prompt_tokens_turn10"] = prompt[-1]
        self.out["prompt_tokens_evaluated_turn10"] = evaluated[-1]

    def throughput(self) -> None:
        import llama_cpp

        from waluigi_desk.core.chat import ChatSession

        e = self.engine
        n_tokens = 96 if self.quick else 256
        reps = 2 if self.quick else 3
        seed = 7
        temp, top_p = 0.7, 0.95
        msgs = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": STREAM_PROMPT}]
        tokens = e.tokenize_prompt(msgs)
        raw = llama_cpp.Llama(model_path=e.info.model_path, n_ctx=e.info.n_ctx, n_gpu_layers=e.info.gpu_layers,
                              n_threads=e.n_threads, n_threads_batch=e.n_threads, flash_attn=e.flash_attn,
                              verbose=False)
        s = self._store("throughput.db")
        try:
            self.settings.override("max_tokens", n_tokens)
            self.settings.override("temperature", temp)
            self.settings.override("top_p", top_p)
            self.settings.override("seed", seed)
            session = ChatSession(s, e, self.settings)
            app_rates, raw_rates, app_n, raw_n = [], [], [], []
            for _ in range(reps):
                # the app's path: ChatSession -> engine -> callbacks -> store flushes
                cid = session.new_conversation(system_prompt="You are a helpful assistant.")
                t = session.send(cid, STREAM_PROMPT, lambda p: None)
                r = t.result
                app_rates.append(r.tokens_per_s)
                app_n.append(r.completion_tokens)
                # the plain loop: same file, settings, prompt, seed and sampler
                raw.set_seed(seed)
                n, t_first, t_last = 0, 0.0, 0.0
                eog = llama_cpp.llama_vocab_is_eog
                vocab = raw._model.vocab
                for tok in raw.generate(tokens, temp=temp, top_p=top_p, top_k=40, min_p=0.05,
                                        repeat_penalty=1.0, reset=True):
                    if eog(vocab, tok):
                        break
                    raw.detokenize([tok])
                    n += 1
                    if n == 1:
                        t_first = time.perf_counter()
                    t_last = time.perf_counter()
                    if n >= n_tokens:
                        break
                raw_rates.append((n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else 0.0)
                raw_n.append(n)
        finally:
            s.close()
            raw.close()
        self.out["tokens_per_s_app"] = round(max(app_rates), 2)
        self.out["tokens_per_s_raw"] = round(max(raw_rates), 2)
        self.out["overhead_ratio"] = round(max(raw_rates) / max(app_rates), 4) if max(app_rates) > 0 else None
        self.out["throughput_tokens"] = {"app": app_n, "raw": raw_n}
        if app_n != raw_n:
            self.notes["overhead_ratio"] = f"app and raw runs generated different token counts ({app_n} vs {raw_n})"

    def detectors(self) -> None:
        import importlib.util

        if importlib.util.find_spec("waluigi_desk.core.detectors") is None or \
                importlib.util.find_spec("waluigi_desk.core.detectors.service") is None:
            self.out["detector_ms_p50"] = self.out["detector_ms_p95"] = None
            self.notes["detector_ms"] = "the detectors (core/detectors/service.py) are not built yet"
            return
        from waluigi_desk.core.detectors import service

        t0 = time.perf_counter()
        svc = service.DetectorService() if not hasattr(service.DetectorService, "from_settings") \
            else service.DetectorService.from_settings(self.settings)
        if hasattr(svc, "load"):
            svc.load()
        self.out["detector_load_s"] = round(time.perf_counter() - t0, 3)
        rng = random.Random(5)
        replies = []
        for _ in range(30 if self.quick else 100):
            n = rng.randint(20, 150)
            words = [rng.choice(WORDS) for _ in range(n)]
            for i in range(0, n, rng.randint(8, 18)):
                words[i] = words[i] + "."
            replies.append(" ".join(words).capitalize() + ".")
        for r in replies[:5]:
            svc.score_text(r)  # warm-up (model load, first-call costs)
        times = []
        for r in replies:
            t0 = time.perf_counter()
            svc.score_text(r)
            times.append((time.perf_counter() - t0) * 1000)
        self.out["detector_ms_p50"] = round(_pct(times, 0.5), 2)
        self.out["detector_ms_p95"] = round(_pct(times, 0.95), 2)

    def ui_stall(self) -> None:
        import importlib.util

        if importlib.util.find_spec("waluigi_desk.ui.app") is None:
            self.out["ui_max_stall_ms"] = None
            self.notes["ui_max_stall_ms"] = "the window (waluigi_desk/ui/app.py) is not built yet"
            return
        env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
                   WALUIGI_DESK_HOME=str(Path(self.tmp.name) / "ui-home"))
        args = [sys.executable, "-m", "waluigi_desk.commands.bench", "--ui-probe"]
        model = self.settings.get("model_path")
        if model:
            args += ["--model", model]
        p = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        m = re.search(r"^UI_PROBE (\{.*\})$", p.stdout, flags=re.M)
        if not m:
            self.out["ui_max_stall_ms"] = None
            self.notes["ui_max_stall_ms"] = f"the UI probe failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-400:]}"
            return
        r = json.loads(m.group(1))
        self.out["ui_max_stall_ms"] = r.get("max_stall_ms")
        if r.get("note"):
            self.notes["ui_max_stall_ms"] = r["note"]

    def fts(self) -> None:
        n = 10_000 if self.quick else 100_000
        s = self._store("fts.db")
        try:
            rng = random.Random(11)
            db = s.db
            t = time.time()
            per_conv = 1000
            with db.conn:
                for c in range(n // per_conv):
                    db.execute("insert into conversations (title, system_prompt, created_at, updated_at) "
                               "values (?, '', ?, ?)", [f"conversation {c}", t, t])
                cids = [r[0] for r in db.execute("select id from conversations order by id")]
                rows = []
                for i in range(n):
                    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60)))
                    rows.append((cids[i // per_conv], i % per_conv, "user" if i % 2 == 0 else "assistant",
                                 words, t + i, 0, "complete", 1, "{}"))
                db.conn.executemany(
                    "insert into messages (conversation_id, position, role, content, created_at, tokens, "
                    "status, in_context, meta) values (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            queries = ["dragon", "lighthouse keeper", "honest answer", "bread kitchen", "river gar",
                       "winter music", "question story", "helpful kind", "castle", "summer water"]
            s.search("warm up")
            times = []
            for _ in range(3):
                for q in queries:
                    t0 = time.perf_counter()
                    s.search(q, limit=50)
                    times.append((time.perf_counter() - t0) * 1000)
            self.out["fts_messages"] = s.count_messages()
            self.out["fts_search_ms"] = round(statistics.median(times), 2)
            self.out["fts_search_ms_p95"] = round(_pct(times, 0.95), 2)
        finally:
            s.close()

    def open_conversation(self) -> None:
        n = 10_000
        s = self._store("open.db")
        try:
            cid = s.create_conversation("long one")
            rng = random.Random(3)
            t = time.time()
            with s.db.conn:
                s.db.conn.executemany(
                    "insert into messages (conversation_id, position, role, content, created_at, tokens, "
                    "status, in_context, meta) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(cid, i, "user" if i % 2 == 0 else "assistant",
                      " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 120))), t + i, 30,
                      "complete", 1, "{}") for i in range(n)])
            s.close()
            times = []
            for _ in range(5):
                s2 = self._store("open.db")  # a fresh connection, as when the app opens it
                t0 = time.perf_counter()
                msgs = s2.messages(cid)
                times.append((time.perf_counter() - t0) * 1000)
                s2.close()
                assert len(msgs) == n
            self.out["open_conversation_ms"] = round(statistics.median(times), 2)
        finally:
            s.close()

    # -- the whole run ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from waluigi_desk import __version__

        t0 = time.perf_counter()
        try:
            import llama_cpp

            llama_version = llama_cpp.__version__
        except Exception:  # pragma: no cover
            llama_version = None
        self.out.update({
            "version": __version__, "quick": self.quick,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "llama_cpp_python": llama_version},
        })
        self._step("startup_to_window_s", self.startup, "startup_to_window_s", part="startup")
        self._step("model_load_s", self.load_model, "model_load_s", part="model")
        if self.engine is not None:
            self._step("ttft", self.ttft, "ttft_s_turn1", "ttft_s_turn10", "ttft_ratio_turn10_turn1")
            self._step("tokens_per_s", self.throughput, "tokens_per_s_app", "tokens_per_s_raw", "overhead_ratio")
        else:
            for k in ("ttft_s_turn1", "ttft_s_turn10", "ttft_ratio_turn10_turn1", "tokens_per_s_app",
                      "tokens_per_s_raw", "overhead_ratio"):
                self.out[k] = None
        self._step("detector_ms", self.detectors, "detector_ms_p50", "detector_ms_p95", part="detectors")
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self._step("ui_max_stall_ms", self.ui_stall, "ui_max_stall_ms", part="ui")
        self._step("fts_search_ms", self.fts, "fts_search_ms", part="fts")
        self._step("open_conversation_ms", self.open_conversation, "open_conversation_ms", part="open")
        self.out["peak_rss_mb"] = round(peak_rss_mb(), 1)
        self.out["bench_seconds"] = round(time.perf_counter() - t0, 1)
        self.out["targets"] = evaluate_targets(self.out)
        self.out["notes"] = self.notes
        self.tmp.cleanup()
        return self.out


def evaluate_targets(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    res = {}
    for name, (op, target) in TARGETS.items():
        v = out.get(name)
        ok = None if v is None else (v <= target if op == "<=" else v >= target)
        res[name] = {"value": v, "target": f"{op} {target:g}", "pass": ok}
    return res


def run_bench(settings: Any, *, quick: bool = False, progress: Callable[[str], None] | None = None,
              skip: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    return Bench(settings, quick=quick, progress=progress, skip=skip).run()
