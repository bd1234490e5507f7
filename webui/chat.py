"""Chat tab: talk to the base model, a run's adapter (final or any checkpoint), a merged export or a GGUF file
(llama.cpp, beside the merged folder it came from),
with replies streamed token by token from the chat worker process; the base model's answer beside
the tuned one; Unload ends the worker and frees its memory. Below it, Evaluate scores a run on a
held-out file. Nothing here imports torch: the model lives in the chat worker (engine.chat).

One chat worker per app (a local workbench): a refreshed page or a second browser finds the model
that is loaded, and loading another one ends the first, so memory is never held twice.
"""
from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Optional

import gradio as gr

from engine.config.chat import ChatSource, GenerationParams
from engine.preflight.model_list import DEFAULT_MODEL, model_list
from engine.runs.chat_client import ChatClient, ChatError
from webui import evaluate_panel, fields, run_choices
from webui import state as S

SOURCES = {"Run (adapter or model)": "run", "Base model": "base", "Merged export folder": "merged",
           "GGUF file (llama.cpp)": "gguf"}
BASE_BOX = "Base (adapter off)"
TUNED_BOX = "Tuned"
SIDE = "Side by side: the base model answers too"
SIDE_GGUF = "Side by side: the merged folder the GGUF file came from answers too"


def gguf_files(saves: Path) -> list[str]:
    """GGUF files exported from the runs in saves/ (<run>/<export>/gguf/*.gguf), newest first."""
    found = saves.glob("*/*/gguf/*.gguf") if saves.is_dir() else []
    return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


class LoadedChat:
    """The app's one chat worker (guarded: two browsers never start two)."""

    def __init__(self):
        self.client: Optional[ChatClient] = None
        self.lock = threading.Lock()

    def load(self, source: ChatSource, saves: Path) -> dict:
        with self.lock:
            self.unload_locked()
            client = ChatClient(source, saves=saves)
            info = client.start()
            self.client = client
            return info

    def unload_locked(self) -> Optional[int]:
        pid = None
        if self.client is not None:
            pid = self.client.pid
            self.client.unload()
            self.client = None
        return pid

    def unload(self) -> Optional[int]:
        with self.lock:
            return self.unload_locked()


CHAT = LoadedChat()


def status_markdown(info: Optional[dict], client: Optional[ChatClient]) -> str:
    if client is None or not client.alive:
        return "**No model loaded.** Pick one and press **Load**: it runs in its own process."
    parts = [f"**Loaded:** {html.escape(info.get('label', ''))} · pid {client.pid} · "
             f"{info.get('device', 'cpu')} · {info.get('rss_gib', 0):.2f} GiB RAM · "
             f"loaded in {info.get('load_s', 0)} s"]
    if info.get("warning"):
        parts.append(f"⚠️ {html.escape(info['warning'])}")
    return "\n\n".join(parts)


def _text(content) -> str:
    """A chatbot message's content as plain text (Gradio may hand it back as content blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text", content.get("content", "")))
    return "" if content is None else str(content)


def as_messages(history: list) -> list[dict]:
    return [{"role": m["role"], "content": _text(m.get("content"))} for m in history or []
            if isinstance(m, dict) and m.get("role") in ("user", "assistant")]


def on_refresh(s: S.RunState, picked: Optional[dict]):
    """The runs saved so far (the one just trained offered unless the user picked another) and the worker's state."""
    client = CHAT.client
    return (*run_choices.refreshed(S.saves_path(s), picked, s.run_dir),
            status_markdown(client.info if client else None, client))


def on_refresh_choices(s: S.RunState):
    """Opening the run list shows the runs saved since the page was built (value untouched)."""
    client = CHAT.client
    return run_choices.on_focus(s), status_markdown(client.info if client else None, client)


def on_kind(k: str, s: S.RunState):
    src = SOURCES[k]
    files = gguf_files(S.saves_path(s)) if src == "gguf" else []
    return (gr.update(visible=src == "run"), gr.update(visible=src == "run"), gr.update(visible=src == "base"),
            gr.update(visible=src == "merged"),
            gr.update(visible=src == "gguf", **({"choices": files, "value": files[0]} if files else {})))


def on_load(k: str, run_dir: Optional[str], ck: Optional[str], base_model: Optional[str], merged_dir: Optional[str],
            gguf_file: Optional[str], s: S.RunState):
    """(status, worker info, side-by-side checkbox, first and second box) after loading what the user picked in the
    worker."""
    src = SOURCES[k]
    if src == "run" and not run_dir:
        return ("**Pick a run first** (a finished run, or one with a checkpoint).", gr.skip(), gr.skip(), gr.skip(),
                gr.skip())
    model = {"base": base_model, "merged": merged_dir, "gguf": gguf_file}.get(src) or ""
    source = (ChatSource("run", run_dir=run_dir or "", checkpoint=run_choices.checkpoint_value(ck))
              if src == "run" else ChatSource(src, model=model.strip()))
    try:
        info = CHAT.load(source, S.saves_path(s))
    except ChatError as e:
        return f"**Could not load:** {html.escape(str(e))}", {}, gr.skip(), gr.skip(), gr.skip()
    gguf = src == "gguf"
    return (status_markdown(info, CHAT.client), info,
            gr.update(value=bool(info.get("can_compare")), interactive=bool(info.get("can_compare")),
                      label=SIDE_GGUF if gguf else SIDE),
            gr.update(label="GGUF (llama.cpp)" if gguf else TUNED_BOX),
            gr.update(label=info.get("compare_label") or BASE_BOX))


def on_unload():
    pid = CHAT.unload()
    return (f"**Unloaded:** the chat worker (pid {pid}) has ended and its memory is free." if pid else
            status_markdown(None, None)), {}


def on_send(text, hist_t, hist_b, both, sys_p, temp, tp, mx, rp):
    """Stream the tuned (and, side by side, the base) reply into the two chat boxes."""
    text = (text or "").strip()
    client = CHAT.client
    if not text:
        yield hist_t, hist_b, gr.update(), ""
        return
    if client is None or not client.alive:
        yield hist_t, hist_b, gr.update(), "**No model loaded:** press **Load** first."
        return
    params = GenerationParams(system_prompt=sys_p or "", temperature=float(temp), top_p=float(tp),
                              max_new_tokens=int(mx), repetition_penalty=float(rp))
    compare = bool(both) and bool(client.info.get("can_compare"))
    hist_t = list(hist_t or []) + [{"role": "user", "content": text}]
    hist_b = list(hist_b or []) + [{"role": "user", "content": text}] if compare else list(hist_b or [])
    notes = []
    try:
        for variant, hist in (("tuned", hist_t), ("base", hist_b)) if compare else (("tuned", hist_t),):
            convo = as_messages(hist)
            hist.append({"role": "assistant", "content": ""})
            for piece in client.stream(convo, params, variant=variant):
                hist[-1] = {"role": "assistant", "content": _text(hist[-1]["content"]) + piece}
                yield hist_t, hist_b, "", ""
            d = client.last_done
            notes.append(f"{variant}: {d.get('new_tokens')} tokens, {d.get('tokens_per_s')} tokens/s, "
                         f"stopped by {d.get('stopped_by')}")
    except ChatError as e:
        notes.append(f"**Error:** {html.escape(str(e))}")
    yield hist_t, hist_b, "", " · ".join(notes)


def on_stop():
    if CHAT.client is not None:
        CHAT.client.cancel()


def build(state: gr.State, tab: gr.Tab) -> list[fields.FieldWidget]:
    st: S.RunState = state.value
    gr.Markdown("### Chat\nTalk to a trained run with the chat template and stop tokens it trained with. "
                "Tick **Side by side** to see the base model answer the same prompt.")
    with gr.Row(equal_height=True):
        kind = gr.Radio(list(SOURCES), value="Run (adapter or model)", label="Talk to", scale=2,
                        elem_classes=["ws-chat-kind"])
        first_runs = run_choices.runs_with_weights(S.saves_path(st))
        first_run = first_runs[0][1] if first_runs else None
        first_cps = run_choices.checkpoint_choices(first_run)
        run = gr.Dropdown(label="Run", choices=first_runs, value=first_run, scale=3, elem_classes=["ws-chat-run"])
        ckpt = gr.Dropdown(label="Weights", choices=first_cps, value=first_cps[0] if first_cps else None, scale=2,
                           elem_classes=["ws-chat-ckpt"],
                           info="final = the end of training; or any checkpoint")
        base = gr.Dropdown(label="Base model", choices=model_list(), value=DEFAULT_MODEL, allow_custom_value=True,
                           visible=False, scale=3, elem_classes=["ws-chat-base"])
        merged = gr.Textbox(label="Merged folder", placeholder="saves/<run>/merged", visible=False, scale=3,
                            elem_classes=["ws-chat-merged"])
        gguf = gr.Dropdown(label="GGUF file", choices=gguf_files(S.saves_path(st)), value=None,
                           allow_custom_value=True, visible=False, scale=3, elem_classes=["ws-chat-gguf"],
                           info="answered by llama.cpp on the CPU; side by side: the merged folder it came from")
    with gr.Row():
        load = gr.Button("Load", variant="primary", elem_classes=["ws-chat-load"])
        unload = gr.Button("Unload", elem_classes=["ws-chat-unload"])
        refresh = gr.Button("Refresh runs")
    status = gr.Markdown(status_markdown(None, None), elem_classes=["ws-chat-status"])
    with gr.Accordion("Generation settings", open=False):
        with gr.Row():
            system = gr.Textbox(label="System prompt", scale=3,
                                placeholder="empty = as in training (the run's system prompt, else the template's)")
            temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature", info="0 = greedy")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
            max_new = gr.Slider(8, 2048, value=256, step=8, label="Max new tokens")
            rep = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label="Repetition penalty")
    side = gr.Checkbox(label=SIDE, value=True, elem_classes=["ws-chat-side"])
    with gr.Row():
        tuned_box = gr.Chatbot(label=TUNED_BOX, height=380, elem_classes=["ws-chat-tuned"])
        base_box = gr.Chatbot(label=BASE_BOX, height=380, elem_classes=["ws-chat-basebox"])
    with gr.Row(equal_height=True):
        msg = gr.Textbox(show_label=False, placeholder="Ask something and press Enter", scale=6,
                         elem_classes=["ws-chat-input"])
        send = gr.Button("Send", variant="primary", scale=1, elem_classes=["ws-chat-send"])
        stop = gr.Button("Stop reply", scale=1, elem_classes=["ws-chat-stop"])
        clear = gr.Button("Clear", scale=1)
    stats = gr.Markdown(elem_classes=["ws-chat-stats"])
    info_state = gr.State({})
    picked = gr.State({})  # the run and weights this user chose (a value the page showed is not a choice)

    kind.change(on_kind, [kind, state], [run, ckpt, base, merged, gguf], show_progress="hidden")
    refresh.click(on_refresh, [state, picked], [run, ckpt, status], show_progress="hidden")
    run.input(run_choices.on_pick_run, [run], [ckpt, picked], show_progress="hidden")
    ckpt.input(run_choices.on_pick_weights, [run, ckpt], [picked], show_progress="hidden")
    load.click(on_load, [kind, run, ckpt, base, merged, gguf, state], [status, info_state, side, tuned_box, base_box])
    unload.click(on_unload, None, [status, info_state])
    inputs = [msg, tuned_box, base_box, side, system, temperature, top_p, max_new, rep]
    send.click(on_send, inputs, [tuned_box, base_box, msg, stats], show_progress="hidden")
    msg.submit(on_send, inputs, [tuned_box, base_box, msg, stats], show_progress="hidden")
    stop.click(on_stop, None, None, show_progress="hidden")
    clear.click(lambda: ([], [], ""), None, [tuned_box, base_box, stats], show_progress="hidden")
    side.change(lambda b: gr.update(visible=bool(b)), [side], [base_box], show_progress="hidden")
    run.focus(on_refresh_choices, [state], [run, status], show_progress="hidden")
    tab.select(on_refresh, [state, picked], [run, ckpt, status], show_progress="hidden")  # the run just trained

    evaluate_panel.build(state)
    return []
