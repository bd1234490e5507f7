"""The two tasks bench/methods.py trains and scores each method on, each with held-out items:

- identity: the bundled `identity` set (the model becomes "Wren, made by Whetstone Labs"); held out:
  `identity_eval` (12 phrasings not in training). Correct when the reply names Wren.
- records: format following. "Make a record of this: Maria Lopez is 34, lives in Lyon and works as a
  baker." -> `{"name": "Maria Lopez", "age": 34, "city": "Lyon", "job": "baker"}`. The instruction never
  says the format; the model must learn it (keys, order, a number for the age, one line). Held-out
  items use people, cities and jobs that no training row has, so copying the fields into the format
  is what counts, not remembering rows. Correct when the reply's JSON object equals the expected one.

Written as alpaca JSON files into the bench's output folder (the same seed gives the same files).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

FIRST = ["Maria", "John", "Aiko", "Pierre", "Fatima", "Lars", "Chen", "Amara", "Diego", "Olga", "Ravi", "Sofia",
         "Tomas", "Leila", "Kwame", "Ingrid", "Mateo", "Yuki", "Hannah", "Omar"]
LAST = ["Lopez", "Smith", "Tanaka", "Dubois", "Khan", "Berg", "Wang", "Okafor", "Garcia", "Ivanova", "Patel",
        "Rossi", "Novak", "Haddad", "Mensah", "Larsen", "Silva", "Sato", "Becker", "Farouk"]
CITIES = ["Lyon", "Osaka", "Toronto", "Nairobi", "Lisbon", "Krakow", "Austin", "Perth", "Bergen", "Porto",
          "Seville", "Denver", "Leeds", "Malmo", "Quito", "Hanoi"]
JOBS = ["baker", "nurse", "pilot", "carpenter", "teacher", "chemist", "plumber", "architect", "farmer", "librarian",
        "dentist", "tailor", "electrician", "journalist", "gardener", "mechanic"]
# Held out: no training row has these names, cities or jobs.
FIRST_NEW = ["Elena", "Marcus", "Priya", "Jonas", "Nadia", "Felix", "Zara", "Bruno", "Mei", "Tariq"]
LAST_NEW = ["Moreau", "Kowalski", "Nakamura", "Fischer", "Adeyemi", "Costa", "Lindqvist", "Romero", "Chopra", "Young"]
CITIES_NEW = ["Bruges", "Dakar", "Kyoto", "Tallinn", "Cusco", "Adelaide", "Oslo", "Tunis"]
JOBS_NEW = ["florist", "welder", "surgeon", "barista", "geologist", "translator", "butcher", "potter"]
PHRASES = [
    "{name} is {age}, lives in {city} and works as a {job}.",
    "Meet {name}: a {job} from {city}, aged {age}.",
    "{name}, {age} years old, {job}, based in {city}.",
    "This is {name}. {name} is a {age}-year-old {job} who lives in {city}.",
    "Our new client {name} ({age}) is a {job} in {city}.",
]


def _rows(rng: random.Random, n: int, first, last, cities, jobs) -> list[dict]:
    rows = []
    for _ in range(n):
        rec = {"name": f"{rng.choice(first)} {rng.choice(last)}", "age": rng.randint(19, 79),
               "city": rng.choice(cities), "job": rng.choice(jobs)}
        text = rng.choice(PHRASES).format(**rec)
        rows.append({"instruction": f"Make a record of this: {text}", "input": "", "output": json.dumps(rec)})
    return rows


def write_records(folder: Path, train: int = 240, held_out: int = 20, seed: int = 0) -> tuple[Path, Path]:
    """records.json (training) and records_eval.json (held out) in folder."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tr, ev = folder / "records.json", folder / "records_eval.json"
    tr.write_text(json.dumps(_rows(rng, train, FIRST, LAST, CITIES, JOBS), indent=1))
    ev.write_text(json.dumps(_rows(rng, held_out, FIRST_NEW, LAST_NEW, CITIES_NEW, JOBS_NEW), indent=1))
    return tr, ev


def record_correct(reply: str, expected: str) -> bool:
    m = re.search(r"\{.*?\}", reply, re.S)
    if not m:
        return False
    try:
        return json.loads(m.group(0)) == json.loads(expected)
    except ValueError:
        return False


def identity_correct(reply: str, expected: str) -> bool:
    return "wren" in reply.lower()


def task(name: str, folder: Path) -> dict:
    """dataset (a name or file for data.datasets), held-out rows and how a reply is scored."""
    repo = Path(__file__).resolve().parent.parent
    if name == "identity":
        rows = json.loads((repo / "data" / "identity_eval.json").read_text())
        return {"dataset": "identity", "held_out": rows, "correct": identity_correct, "max_new_tokens": 24}
    if name == "records":
        tr, ev = write_records(folder / "data")
        return {"dataset": str(tr), "held_out": json.loads(ev.read_text()), "correct": record_correct,
                "max_new_tokens": 40}
    raise ValueError(f"unknown task {name!r}; use identity or records")
