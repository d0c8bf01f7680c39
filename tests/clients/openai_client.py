"""Drives the gateway with the official OpenAI Python SDK, for the end-to-end tests.

Prints one JSON object on stdout describing what the SDK saw.
"""
import argparse
import json
import sys
import time

import openai
from openai import OpenAI


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--model", required=True)
    p.add_argument(
        "--mode",
        choices=["plain", "stream", "stream-usage", "models", "tools", "stream-tools",
                 "responses", "responses-stream", "embeddings"],
        default="plain",
    )
    p.add_argument("--request-id", default=None)
    p.add_argument("--traceparent", default=None)
    a = p.parse_args()

    client = OpenAI(base_url=a.base_url, api_key=a.key, max_retries=0, timeout=30)
    headers = {}
    if a.request_id:
        headers["x-request-id"] = a.request_id
    if a.traceparent:
        headers["traceparent"] = a.traceparent
    headers = headers or None
    messages = [{"role": "user", "content": "Say hello to the gateway please"}]
    started = time.monotonic()
    try:
        if a.mode == "models":
            models = client.models.list()
            print(json.dumps({"models": sorted(m.id for m in models.data)}))
            return 0
        if a.mode == "embeddings":
            r = client.embeddings.create(model=a.model, input=["one two", "three"], extra_headers=headers)
            print(json.dumps({"count": len(r.data), "dims": len(r.data[0].embedding),
                              "usage": r.usage.model_dump()}))
            return 0
        if a.mode == "responses":
            r = client.responses.create(model=a.model, input="Say hello please", extra_headers=headers)
            print(json.dumps({"text": r.output_text, "usage": r.usage.model_dump() if r.usage else None}))
            return 0
        if a.mode == "responses-stream":
            deltas, types, usage = [], [], None
            for ev in client.responses.create(model=a.model, input="Say hello please", stream=True,
                                              extra_headers=headers):
                types.append(ev.type)
                if ev.type == "response.output_text.delta":
                    deltas.append(ev.delta)
                if ev.type == "response.completed":
                    usage = ev.response.usage.model_dump()
            print(json.dumps({"text": "".join(deltas), "types": types, "usage": usage}))
            return 0
        if a.mode in ("tools", "stream-tools"):
            tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}}]
            if a.mode == "tools":
                c = client.chat.completions.create(model=a.model, messages=messages, tools=tools,
                                                   extra_headers=headers)
                calls = c.choices[0].message.tool_calls or []
                print(json.dumps({"calls": [{"name": t.function.name, "arguments": t.function.arguments}
                                            for t in calls],
                                  "finish_reason": c.choices[0].finish_reason}))
                return 0
            calls, finish = {}, None
            for chunk in client.chat.completions.create(model=a.model, messages=messages, tools=tools,
                                                        stream=True, extra_headers=headers):
                for choice in chunk.choices:
                    for tc in choice.delta.tool_calls or []:
                        entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                        if tc.function and tc.function.name:
                            entry["name"] = tc.function.name
                        if tc.function and tc.function.arguments:
                            entry["arguments"] += tc.function.arguments
                    finish = choice.finish_reason or finish
            print(json.dumps({"calls": [calls[k] for k in sorted(calls)], "finish_reason": finish}))
            return 0
        if a.mode == "plain":
            r = client.chat.completions.with_raw_response.create(
                model=a.model, messages=messages, extra_headers=headers
            )
            c = r.parse()
            print(json.dumps({
                "content": c.choices[0].message.content,
                "usage": c.usage.model_dump() if c.usage else None,
                "request_id_header": r.headers.get("x-request-id"),
            }))
            return 0
        kwargs = {}
        if a.mode == "stream-usage":
            kwargs["stream_options"] = {"include_usage": True}
        stream = client.chat.completions.create(
            model=a.model, messages=messages, stream=True, extra_headers=headers, **kwargs
        )
        pieces, usage, chunks, first = [], None, 0, None
        for chunk in stream:
            chunks += 1
            if first is None:
                first = time.monotonic() - started
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    pieces.append(choice.delta.content)
        print(json.dumps({
            "content": "".join(pieces),
            "usage": usage,
            "chunks": chunks,
            "first_chunk_s": first,
            "total_s": time.monotonic() - started,
        }))
        return 0
    except openai.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "error": e.body}))
        return 0


if __name__ == "__main__":
    sys.exit(main())
