"""Hostile model files (issue 5): at least ten malformed GGUF files generated here. Each gets a
clear error, nothing crashes, no code from a chat template runs, and the engine loaded before
keeps working."""

from __future__ import annotations

import struct
import threading

import pytest

from tests.helpers import gguf
from waluigi_desk.core.engine import GenParams
from waluigi_desk.core.engine.llama import LlamaEngine
from waluigi_desk.core.models import read_gguf_header
from waluigi_desk.errors import ModelError

H = gguf.header
KV = gguf.kv


def _builders():
    arch = KV("general.architecture", gguf.STRING, "llama")
    good = gguf.minimal_gguf()
    nested = struct.pack("<IQ", gguf.ARRAY, 1) * 40 + struct.pack("<IQ", gguf.UINT8, 0)
    return {
        "wrong_magic": b"GGML" + good[4:],
        "truncated_header": good[:14],
        "absurd_tensor_count": H(tensor_count=2**62, kv_count=1) + arch,
        "absurd_kv_count": H(tensor_count=1, kv_count=2**60) + arch,
        "huge_key_length": H(tensor_count=1, kv_count=1) + struct.pack("<Q", 2**63) + b"k",
        "huge_string_value": H(tensor_count=1, kv_count=1) + gguf.s("general.name")
        + struct.pack("<IQ", gguf.STRING, 2**40) + b"x" * 64,
        "bad_value_type": H(tensor_count=1, kv_count=1) + gguf.s("general.name") + struct.pack("<I", 99) + b"\0" * 64,
        "deep_nested_arrays": H(tensor_count=1, kv_count=1) + gguf.s("x") + struct.pack("<I", gguf.ARRAY) + nested,
        "huge_array": H(tensor_count=1, kv_count=1) + gguf.s("x")
        + struct.pack("<IIQ", gguf.ARRAY, gguf.UINT32, 2**61),
        "absurd_tensor_dims": H(tensor_count=1, kv_count=1) + arch
        + gguf.s("t") + struct.pack("<I", 4096) + b"\0" * 256,
        "zero_bytes": b"",
        "random_bytes": bytes((i * 7919 + 13) % 256 for i in range(4096)),
        "bad_version": gguf.minimal_gguf(version=0xFFFFFFFF),
        "no_tensors": H(tensor_count=0, kv_count=1) + arch,
        "unknown_architecture": gguf.minimal_gguf("../../etc/passwd"),
    }


BUILDERS = sorted(_builders())


def _check_still_works(engine: LlamaEngine) -> None:
    r = engine.generate([{"role": "user", "content": "Say hello."}],
                        GenParams(temperature=0.0, max_tokens=4, seed=0), lambda p: None, threading.Event())
    assert r.completion_tokens >= 1 and r.text


def test_at_least_ten_cases():
    assert len(BUILDERS) >= 10


@pytest.mark.parametrize("case", BUILDERS)
def test_malformed_gguf_clear_error(tmp_path, case, llama_engine):
    p = gguf.write(tmp_path / f"{case}.gguf", _builders()[case])
    with pytest.raises(ModelError) as ei:
        info = read_gguf_header(p)
        # the header may be readable (unknown architecture): then loading must refuse it
        LlamaEngine(info.path).load()
    msg = ei.value.message
    assert p.name in msg and "\n" not in msg
    _check_still_works(llama_engine)


def test_directory_named_like_a_model(tmp_path, llama_engine):
    d = tmp_path / "model.gguf"
    d.mkdir()
    with pytest.raises(ModelError, match="folder"):
        LlamaEngine(str(d))
    _check_still_works(llama_engine)


ESCAPES = {
    "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals_popen": "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
}


@pytest.fixture(scope="module")
def template_copies(tmp_path_factory, default_model_path):
    """Real model copies whose chat template tries to escape the Jinja sandbox."""
    d = tmp_path_factory.mktemp("hostile-templates")
    marker = d / "pwned"
    out = {}
    for name, expr in ESCAPES.items():
        tpl = expr.replace("MARKER", str(marker)) + (
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "<|im_start|>assistant\n")
        out[name] = gguf.rewrite_string(default_model_path, d / f"{name}.gguf", "tokenizer.chat_template", tpl)
    # only fires on a longer conversation, after the load-time check has passed
    late = ("{% if messages|length > 2 %}" + ESCAPES["globals_popen"].replace("MARKER", str(marker))
            + "{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
            "{% endfor %}<|im_start|>assistant\n")
    out["late"] = gguf.rewrite_string(default_model_path, d / "late.gguf", "tokenizer.chat_template", late)
    return out, marker


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_chat_template_sandbox_escape_refused(template_copies, name, llama_engine):
    paths, marker = template_copies
    assert read_gguf_header(paths[name]).has_chat_template  # the header itself is valid
    with pytest.raises(ModelError) as ei:
        LlamaEngine(str(paths[name]), n_ctx=512).load()
    assert f"{name}.gguf" in ei.value.message and "chat template" in ei.value.message
    assert not marker.exists(), "code from the chat template ran"
    _check_still_works(llama_engine)


def test_chat_template_escape_later_in_conversation(template_copies, store, settings, llama_engine):
    """A template that only misbehaves on longer prompts: the turn fails with a clear message,
    no code runs, and the user's message is kept."""
    from waluigi_desk.core.chat import ChatSession

    paths, marker = template_copies
    e = LlamaEngine(str(paths["late"]), n_ctx=512)
    e.load()  # the load-time probe uses two messages, so this passes
    try:
        settings.override("max_tokens", 4)
        session = ChatSession(store, e, settings)
        cid = session.new_conversation(system_prompt="Be brief.")
        first = session.send(cid, "Hello there", lambda p: None)
        assert first.error is None and first.result is not None
        turn = session.send(cid, "And again", lambda p: None)
        assert turn.result is None and turn.error and "late.gguf" in turn.error
        assert "chat template" in turn.error
        assert [m.content for m in store.messages(cid)][-1] == "And again"
        assert not marker.exists()
    finally:
        e.close()
    _check_still_works(llama_engine)
