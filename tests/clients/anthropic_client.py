"""Drives the gateway's /v1/messages with the official Anthropic Python SDK, for the end-to-end
tests. Prints one JSON object on stdout describing what the SDK saw."""
import argparse
import json
import sys

import anthropic


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)  # the gateway root, e.g. http://127.0.0.1:8080
    p.add_argument("--key", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--mode", choices=["plain", "stream", "tools", "stream-tools"], default="plain")
    p.add_argument("--request-id", default=None)
    a = p.parse_args()

    client = anthropic.Anthropic(base_url=a.base_url, api_key=a.key, max_retries=0, timeout=30)
    headers = {"x-request-id": a.request_id} if a.request_id else None
    kwargs = dict(model=a.model, max_tokens=64, extra_headers=headers,
                  messages=[{"role": "user", "content": "Say hello to the gateway please"}])
    if a.mode in ("tools", "stream-tools"):
        kwargs["tools"] = [{"name": "get_weather", "description": "weather",
                            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    try:
        if a.mode in ("plain", "tools"):
            m = client.messages.create(**kwargs)
            print(json.dumps({
                "text": "".join(b.text for b in m.content if b.type == "text"),
                "tool_uses": [{"name": b.name, "input": b.input} for b in m.content if b.type == "tool_use"],
                "stop_reason": m.stop_reason,
                "usage": {"input_tokens": m.usage.input_tokens, "output_tokens": m.usage.output_tokens},
            }))
            return 0
        with client.messages.stream(**kwargs) as stream:
            types = [event.type for event in stream]
            m = stream.get_final_message()
        print(json.dumps({
            "text": "".join(b.text for b in m.content if b.type == "text"),
            "tool_uses": [{"name": b.name, "input": b.input} for b in m.content if b.type == "tool_use"],
            "stop_reason": m.stop_reason,
            "usage": {"input_tokens": m.usage.input_tokens, "output_tokens": m.usage.output_tokens},
            "event_types": types,
        }))
        return 0
    except anthropic.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "error": e.body}))
        return 0


if __name__ == "__main__":
    sys.exit(main())
