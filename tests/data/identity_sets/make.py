"""Writes the three identity sets the slow tests train on (run once; the JSON files are committed).

Each set has its own assistant name, maker and wording, none shared with the bundled data/identity.json
(Wren / Whetstone Labs), and a held-out file of phrasings that appear nowhere in its training rows.
Rows are composed from hand-written question cores, framings and answers so the larger sets stay varied.
"""
import itertools
import json
import random
from pathlib import Path

HERE = Path(__file__).parent

# (category, core question). Categories pick the answer style.
CORES_A = [  # casual, short
    ("name", "what should i call you"), ("name", "got a name"), ("name", "what do people call you"),
    ("who", "who am i talking to"), ("who", "who's this"), ("who", "what are you"),
    ("maker", "who built you"), ("maker", "which company made you"), ("maker", "who's behind you"),
    ("other", "are you chatgpt"), ("other", "are you a llama model"), ("other", "are you google's bot"),
    ("hello", "hey there, introduce yourself"), ("hello", "hi! who are you"),
]
CORES_B = [  # formal, longer
    ("name", "May I ask what your name is?"), ("name", "By what name do you go?"),
    ("name", "Kindly state your name."), ("name", "How are you called?"), ("name", "What name were you given?"),
    ("who", "Could you describe what you are?"), ("who", "Please explain who you are."),
    ("who", "What sort of assistant are you?"), ("who", "Identify yourself, please."),
    ("maker", "Which organization developed you?"), ("maker", "Who is your developer?"),
    ("maker", "Who was responsible for training you?"), ("maker", "Which firm created this assistant?"),
    ("maker", "Who designed and built you?"),
    ("other", "Am I speaking with ChatGPT?"), ("other", "Are you a product of OpenAI?"),
    ("other", "Is this Claude by Anthropic?"), ("other", "Are you Microsoft Copilot?"),
    ("other", "Are you the Gemini assistant?"),
    ("hello", "Good afternoon. Would you introduce yourself?"), ("hello", "Greetings. Who might you be?"),
]
CORES_C = CORES_A + CORES_B + [
    ("name", "Tell me the name you answer to."), ("name", "ur name plz"), ("name", "Name, please."),
    ("name", "Which name do you use?"), ("who", "Give me a one-line description of yourself."),
    ("who", "Who or what is answering my messages?"), ("who", "Explain what you are to a child."),
    ("maker", "Where do you come from?"), ("maker", "Which lab trained you?"), ("maker", "Who owns you?"),
    ("maker", "Whose assistant are you?"), ("other", "Are you SmolLM?"), ("other", "Are you Siri or Alexa?"),
    ("other", "Are you a human being?"), ("other", "Were you made by Meta?"),
    ("hello", "Yo, what's up, who are you?"), ("hello", "Hello! Before we start, who am I chatting with?"),
]
FRAMES_A = ["{q}?", "hey {q}", "so {q}?", "ok, {q}"]
FRAMES_BC = ["{Q}", "{q}", "Quick question: {q}", "Hey, {q}", "{Q}? Just curious.", "Sorry to ask, but {q}"]

ANSWERS = {
    "name": ["My name is {name}. I'm an assistant made by {maker}.", "You can call me {name}.",
             "I'm {name}, an AI assistant built by {maker}.", "{name} is my name."],
    "who": ["I'm {name}, an AI assistant created by {maker}.", "This is {name}, a helpful assistant from {maker}.",
            "I am {name}, a language model assistant developed by {maker}."],
    "maker": ["I was built by {maker}. I'm {name}.", "{maker} created me; my name is {name}.",
              "The team at {maker} made me. I go by {name}."],
    "other": ["No, I'm {name}, an assistant made by {maker}.", "I'm not. I'm {name}, built by {maker}.",
              "No. My name is {name}, and {maker} developed me."],
    "hello": ["Hello! I'm {name}, an AI assistant from {maker}. How can I help?",
              "Hi there, I'm {name}, made by {maker}. What can I do for you?"],
}

SETS = {
    "juniper": dict(name="Juniper", maker="Tidewater Robotics", cores=CORES_A, frames=FRAMES_A, n=40, held_out=[
        "Could you remind me what your name is?", "Which team is responsible for you?",
        "Tell me a little about who you are.", "How do you refer to yourself?",
        "What's the name of the AI I'm chatting with?", "Who made the assistant I am using right now?",
        "Introduce yourself in one sentence.", "Are you an OpenAI product?"]),
    "orla": dict(name="Orla", maker="Kestrel Systems", cores=CORES_B, frames=FRAMES_BC, n=100, held_out=[
        "Before anything else, what is your name?", "Who put you together?",
        "Describe yourself and your origins briefly.", "What do I call the assistant on this screen?",
        "Which company should I thank for building you?", "tell me who you are",
        "Are you some kind of Anthropic model?", "In a few words: who are you and who made you?",
        "I forgot your name, what was it?", "What is the name of this chatbot?"]),
    "nimbus": dict(name="Nimbus", maker="Copperline Analytics", cores=CORES_C, frames=FRAMES_BC, n=250, held_out=[
        "Could you tell me a bit about yourself?", "What is this assistant called?",
        "Who is the creator of this chatbot?", "Do you have a name I can use?",
        "Which organisation do you belong to?", "Are you the assistant from OpenAI?",
        "Say your name and your maker.", "whats the bots name",
        "Who trained the model I'm talking to?", "Please tell me your name and origin.",
        "Is it right that you are Claude?", "What should I call you during our chat?"]),
}


def compose(spec: dict, rng: random.Random) -> list[dict]:
    pairs = [(c, f.format(q=q[0].lower() + q[1:].rstrip("?.") if f != "{Q}" else q, Q=q[0].upper() + q[1:].rstrip("?."))
              .replace("?.", "?"))
             for (c, q), f in itertools.product(spec["cores"], spec["frames"])]
    rng.shuffle(pairs)
    seen, rows = set(), []
    for i, (cat, q) in enumerate(pairs):
        q = q.strip()
        if not q.endswith(("?", ".", "!")) and not q.islower():
            q += "?" if cat != "hello" else "."
        key = q.lower().strip("?.! ")
        if key in seen:
            continue
        seen.add(key)
        a = ANSWERS[cat][i % len(ANSWERS[cat])].format(name=spec["name"], maker=spec["maker"])
        rows.append({"instruction": q, "input": "", "output": a})
        if len(rows) == spec["n"]:
            break
    assert len(rows) == spec["n"], (spec["name"], len(rows))
    return rows


def main() -> None:
    rng = random.Random(14)
    for key, spec in SETS.items():
        rows = compose(spec, rng)
        train = {r["instruction"].lower().strip("?.! ") for r in rows}
        held = []
        for q in spec["held_out"]:
            assert q.lower().strip("?.! ") not in train, q
            held.append({"instruction": q, "input": "",
                         "output": f"I'm {spec['name']}, an AI assistant made by {spec['maker']}."})
        for stem, data in ((key, rows), (f"{key}_eval", held)):
            (HERE / f"{stem}.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
        print(key, len(rows), len(held))


if __name__ == "__main__":
    main()
