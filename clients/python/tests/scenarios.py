"""Cross-language scenarios, driven by test/interop/python.test.ts (each prints what the test waits for).

    scenarios.py serve URL NAME [--lease MS] [--max-attempts N]
        runs NAME as an agent: answers {"echo": payload, "by": "python"}; a payload {"fail": true}
        raises ValueError("python says no"); {"hang": true} prints "handling <id> attempt <n>" and hangs
    scenarios.py request URL RECIPIENT PAYLOAD_JSON [TIMEOUT_S]
        prints "RESULT <reply json>" or "ERROR <class> <message json> <payload json>"
    scenarios.py publish URL PAYLOAD_JSON
    scenarios.py subscribe URL TOPIC COUNT       prints "subscribed", then "SEEN <message json>" COUNT times
"""

import json
import sys
import threading
import time

from concord_client import Concord, ConcordError, RemoteError


def serve(url: str, name: str, *options: str) -> None:
    lease_ms = int(options[options.index("--lease") + 1]) if "--lease" in options else 60_000
    max_attempts = int(options[options.index("--max-attempts") + 1]) if "--max-attempts" in options else 5
    client = Concord(url, name=name).connect()

    def handle(message):
        if message["payload"].get("hang"):
            print(f"handling {message['id']} attempt {message['attempt']}", flush=True)
            threading.Event().wait()
        if message["payload"].get("fail"):
            raise ValueError("python says no")
        return {"echo": message["payload"], "by": "python", "attempt": message["attempt"]}

    client.register(name)
    print(f"serving {name}", flush=True)
    client.serve(name, handle, lease_ms=lease_ms, max_attempts=max_attempts)


def request(url: str, recipient: str, payload: str, timeout: str = "10") -> None:
    client = Concord(url, name="py-requester").connect()
    try:
        reply = client.request(recipient, json.loads(payload), timeout=float(timeout))
        print("RESULT " + json.dumps(reply), flush=True)
    except RemoteError as err:
        print(f"ERROR RemoteError {json.dumps(str(err))} {json.dumps(err.payload)}", flush=True)
    except ConcordError as err:
        print(f"ERROR {type(err).__name__} {json.dumps(str(err))} {{}}", flush=True)


def publish(url: str, payload: str) -> None:
    client = Concord(url, name="py-publisher").connect()
    print("PUBLISHED " + json.dumps(client.publish(json.loads(payload))), flush=True)


def subscribe(url: str, topic: str, count: str) -> None:
    client = Concord(url, name="py-subscriber").connect()
    seen = []
    done = threading.Event()

    def on(message):
        seen.append(message)
        print("SEEN " + json.dumps(message), flush=True)
        if len(seen) >= int(count):
            done.set()

    stop = client.subscribe(topic, on)
    print("subscribed", flush=True)
    done.wait(30)
    stop()
    sys.exit(0 if done.is_set() else 1)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"serve": serve, "request": request, "publish": publish, "subscribe": subscribe}[command](*args)
