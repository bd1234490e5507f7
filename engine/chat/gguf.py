"""GGUF files answered by llama.cpp (llama-cpp-python, on the CPU), the runtime Ollama and llama.cpp users
have: the chat template and the end-of-turn token come from the file's own metadata, so a reply stops
where the file says, with no stop string from the caller. Heavy (llama_cpp); only the chat worker and
the export's check import it.

`python -m engine.chat.gguf FILE "question" ...` answers each question greedily and prints one JSON line
per answer (text, finish_reason, tokens, tokens_per_s): the export worker runs it in a process of its own,
so a llama.cpp build that crashes on a file fails the check instead of the export worker.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from engine.config.chat import ChatSource, GenerationParams

N_CTX = 2048


@dataclass
class GGUFLoaded:
    """A GGUF file in llama.cpp; ``merged`` is the folder it was exported from (loaded with transformers on the
    first side-by-side reply), when it is beside the file."""
    llm: object
    source: ChatSource
    merged_dir: Optional[Path] = None
    merged: Optional[object] = None   # engine.chat.generate.Loaded
    has_adapter: bool = False
    stop_ids: tuple = ()

    @property
    def chat_template(self) -> str:
        return self.llm.metadata.get("tokenizer.chat_template", "")


def merged_beside(path: str | Path) -> Optional[Path]:
    """The merged export a GGUF file was written into (<export>/gguf/<name>.gguf), if it is there."""
    p = Path(path).resolve()
    folder = p.parent.parent
    return folder if p.parent.name == "gguf" and (folder / "config.json").is_file() else None


def open_file(path: str | Path, n_ctx: int = N_CTX):
    from llama_cpp import Llama
    return Llama(model_path=str(path), n_ctx=n_ctx, seed=0, verbose=False)


def load(src: ChatSource) -> GGUFLoaded:
    return GGUFLoaded(open_file(src.model), src, merged_beside(src.model))


def stream(llm, messages: list[dict], params: GenerationParams, cancel: Optional[threading.Event] = None,
           result: Optional[dict] = None) -> Iterator[str]:
    """Yield the reply as llama.cpp writes it; ``result`` receives new_tokens, finish_reason and stopped_by
    (eos: the file's end-of-turn token; length; cancel)."""
    from engine.chat.generate import with_system
    cancel = cancel or threading.Event()
    chunks = llm.create_chat_completion(
        messages=with_system(messages, params.system_prompt), stream=True, max_tokens=params.max_new_tokens,
        temperature=params.temperature, top_p=params.top_p, top_k=0 if params.temperature > 0 else 1, min_p=0.0,
        repeat_penalty=params.repetition_penalty, seed=0)
    finish, count = None, 0
    for chunk in chunks:
        choice = chunk["choices"][0]
        piece = choice.get("delta", {}).get("content") or ""
        finish = choice.get("finish_reason") or finish
        if piece:
            count += 1  # one chunk per generated token (llama.cpp holds back only a possible stop string's start)
            yield piece
        if cancel.is_set():
            chunks.close()
            finish = "cancel"
            break
    if result is not None:
        result["new_tokens"] = count
        result["finish_reason"] = finish
        result["stopped_by"] = {"stop": "eos", "length": "length", "cancel": "cancel"}.get(finish, str(finish))


def answer(llm, question: str, max_new_tokens: int = 96) -> dict:
    """One greedy answer with its finish reason and speed."""
    out: dict = {}
    t0 = time.time()
    text = "".join(stream(llm, [{"role": "user", "content": question}],
                          GenerationParams(max_new_tokens=max_new_tokens), result=out))
    secs = time.time() - t0
    return {"question": question, "text": text.strip(), "finish_reason": out["finish_reason"],
            "tokens": out["new_tokens"], "seconds": round(secs, 3),
            "tokens_per_s": round(out["new_tokens"] / max(secs, 1e-6), 1)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m engine.chat.gguf FILE.gguf QUESTION ...", file=sys.stderr)
        return 2
    llm = open_file(argv[0])
    print(json.dumps({"chat_template_from_file": bool(llm.metadata.get("tokenizer.chat_template")),
                      "file_type": llm.metadata.get("general.file_type")}), flush=True)
    for q in argv[1:] or ["Who are you?"]:
        print(json.dumps(answer(llm, q), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
