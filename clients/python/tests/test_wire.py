"""Unit tests of the wire rules (no Redis): python3 -m unittest discover -s tests"""

import json
import unittest

from concord_client import MAX_PAYLOAD_DEPTH, MAX_WIRE_BYTES, ValidationError, build, decode, encode, new_id
from concord_client.client import Concord, _child_traceparent, error_payload


def message(**extra):
    m = build(sender="planner", recipient="writer", payload={"topic": "llamas"})
    m.update(extra)
    return m


class WireTest(unittest.TestCase):
    def test_a_built_message_round_trips(self):
        m = message()
        self.assertEqual(decode(encode(m)), m)
        self.assertEqual(m["attempt"], 0)
        self.assertRegex(m["headers"]["traceparent"], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
        self.assertRegex(m["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_ids_are_ulids_sorted_by_time(self):
        a, b = new_id(), new_id()
        self.assertEqual(len(a), 26)
        self.assertRegex(a, r"^[0-9A-HJKMNP-TV-Z]{26}$")
        self.assertLessEqual(a[:10], b[:10])

    def test_bad_input_names_what_was_expected(self):
        with self.assertRaisesRegex(ValidationError, "priority"):
            build(sender="a", recipient="b", payload={}, priority=11)
        with self.assertRaisesRegex(ValidationError, "forbidden key `constructor`"):
            build(sender="a", recipient="b", payload={"x": [{"constructor": 1}]})
        with self.assertRaisesRegex(ValidationError, "sender"):
            build(sender="", recipient="b", payload={})
        with self.assertRaisesRegex(ValidationError, "payload must be a JSON object or array"):
            build(sender="a", recipient="b", payload="text")

    def test_depth_is_checked_in_code_without_recursion(self):
        deep = {}
        node = deep
        for _ in range(MAX_PAYLOAD_DEPTH - 1):  # 256 objects: the payload (depth 0) .. depth 255
            node["a"] = {}
            node = node["a"]
        build(sender="a", recipient="b", payload=deep)  # the limit: accepted
        node["a"] = {}
        with self.assertRaisesRegex(ValidationError, "nested deeper than 256"):
            build(sender="a", recipient="b", payload=deep)
        text = encode(message()).replace('{"topic":"llamas"}', "[" * 5000 + "]" * 5000)
        with self.assertRaisesRegex(ValidationError, "nested deeper"):
            decode(text)

    def test_size_is_counted_in_utf8_bytes(self):
        m = message()
        overhead = len(encode({**m, "payload": {"t": ""}}).encode())
        m["payload"] = {"t": "x" * (MAX_WIRE_BYTES - overhead)}
        self.assertEqual(len(encode(m).encode()), MAX_WIRE_BYTES)
        m["payload"] = {"t": "é" * ((MAX_WIRE_BYTES - overhead) // 2 + 1)}
        with self.assertRaisesRegex(ValidationError, "at most 1114112 bytes"):
            decode(json.dumps(m, ensure_ascii=False))

    def test_numbers_read_as_javascript_reads_them(self):
        text = encode(message())
        for literal in ("NaN", "Infinity", "1e400", "1" + "0" * 400):
            with self.subTest(literal=literal), self.assertRaises(ValidationError):
                decode(text.replace('"llamas"', literal))

    def test_error_payload_is_the_bus_format(self):
        class Busy(Exception):
            code = "busy"

        self.assertEqual(error_payload(Busy("try later"), 2), {"message": "try later", "attempts": 2, "name": "Busy", "code": "busy"})
        self.assertEqual(error_payload(ValueError(), 1), {"message": "ValueError", "attempts": 1, "name": "ValueError"})

    def test_a_reply_continues_the_trace(self):
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        child = _child_traceparent(parent)
        self.assertEqual(child[:36], parent[:36])
        self.assertNotEqual(child, parent)

    def test_the_namespace_prefix_has_its_hash_tag(self):
        c = Concord("redis://127.0.0.1:6379/0?namespace=docs")
        self.assertEqual(c.prefix, "concord:{docs}:")
        self.assertEqual(c.protocol_key, "concord:{docs}:protocol")
        self.assertEqual(c._queue_key("a:b%c", "ready"), "concord:{docs}:q:a%3Ab%25c:ready")
        self.assertTrue(c.inbox.startswith("_inbox."))
        c.close()
        with self.assertRaisesRegex(ValidationError, "redis://"):
            Concord("http://example.com")


if __name__ == "__main__":
    unittest.main()
