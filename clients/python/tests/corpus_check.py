"""Runs test/corpus/messages.json (see its README) through Python's jsonschema and through this
client's decoder; prints one JSON line per case: {"name", "schema", "client", "error"}.

Usage: corpus_check.py PATH/TO/messages.json PATH/TO/message.schema.json
"""

import json
import re
import sys
import threading

import jsonschema

from concord_client import ValidationError, decode
from concord_client.wire import parse_json


def case_text(corpus, case):
    if "text" in case:
        return re.sub(r"\$(\d)", lambda m: case["fill"][int(m.group(1))][0] * case["fill"][int(m.group(1))][1], case["text"])
    doc = {**corpus["base"], **case.get("patch", {})}
    for key in case.get("remove", []):
        doc.pop(key, None)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        corpus = json.load(f)
    with open(sys.argv[2], encoding="utf-8") as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)

    def schema_accepts(text):
        # JSON as JavaScript reads it: a number that overflows to infinity is no number (README).
        try:
            doc = parse_json(text)
        except ValidationError:
            return False
        return validator.is_valid(doc)

    out = []
    for case in corpus["cases"]:
        text = case_text(corpus, case)
        try:
            decode(text)
            client, error = True, None
        except ValidationError as err:
            client, error = False, str(err)[:200]
        out.append({"name": case["name"], "schema": schema_accepts(text), "client": client, "error": error})
    for line in out:
        print(json.dumps(line))


if __name__ == "__main__":
    # The schema's recursive payload rule recurses once per nesting level (and the corpus nests
    # 1000 deep): a deep stack for this one thread.
    sys.setrecursionlimit(200_000)
    threading.stack_size(512 * 1024 * 1024)
    t = threading.Thread(target=main)
    t.start()
    t.join()
