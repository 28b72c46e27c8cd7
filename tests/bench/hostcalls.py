"""Host calls and VM entries per request: `tests/bench/hostcalls.py` (or `make hostcalls`).

Loads a built filter (mcp_guard.wasm, and the bench's trivial filter) into a small proxy-wasm
host written here on wasmtime, configures it as a `make bench` gateway does, and drives one
request of each headline kind (an allowed tools/call, a denied one, a tools/list) through the
callbacks Envoy makes for it: context create, request headers, request body, response headers,
response body, log, done, delete. Every host function the module imports is counted; a
callback is a VM entry. Envoy calls every `proxy_on_*` the module exports (the Rust SDK exports
them all), so the entries are the same for any Rust filter; what a filter controls is what it
asks of the host inside them.

The answers are the bench upstream's (a small JSON result; the tools/list answer of
envoy/bench/upstream.yaml). Counts are per request once the VM is warm (the third request of a
kind: the first one defines metrics, fills caches and records what it learns; the second reads
those records back once).
"""

from __future__ import annotations

import argparse
import collections
import json
import struct
import sys
from pathlib import Path

import jwt
import wasmtime
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the bench's gateway configurations)

ROOT_ID, PLUGIN_CONFIG, REQUEST_BODY, RESPONSE_BODY = 1, 7, 0, 1
REQUEST_HEADERS, RESPONSE_HEADERS = 0, 2
OK, NOT_FOUND = 0, 1
FUEL = 1 << 62


class Host:
    """One VM: the module, its memory, and what the host holds for the current stream."""

    def __init__(self, wasm: Path, configuration: str) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True  # fuel counts the module's own wasm instructions
        engine = wasmtime.Engine(config)
        self.store = wasmtime.Store(engine)
        self.store.set_fuel(FUEL)
        wasi = wasmtime.WasiConfig()
        self.store.set_wasi(wasi)
        module = wasmtime.Module.from_file(engine, str(wasm))
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        self.calls: collections.Counter[str] = collections.Counter()
        self.trace: list[str] | None = None
        self.fuel_mark = 0  # fuel left at the last callback entry or host call (for the trace)
        self.entry = ""
        self.shared: dict[bytes, tuple[bytes, int]] = {}
        self.metrics: dict[bytes, int] = {}
        self.configuration = configuration.encode()
        self.maps: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytes] = {}
        self.properties = {b"xds\0cluster_name": b"upstream", b"response\0code_details": b"via_upstream"}
        self.local_reply: int | None = None
        for imp in module.imports:
            if imp.module == "env":
                linker.define_func("env", imp.name, imp.type, self._counted(imp.name, imp.type), access_caller=True)
        self.instance = linker.instantiate(self.store, module)
        ex = self.instance.exports(self.store)
        self.memory = ex["memory"]
        self.ex = ex
        if "_initialize" in ex:
            ex["_initialize"](self.store)
        self.call("proxy_on_context_create", ROOT_ID, 0)
        self.call("proxy_on_vm_start", ROOT_ID, 0)
        if not self.call("proxy_on_configure", ROOT_ID, len(self.configuration)):
            raise RuntimeError("the filter refused its configuration")

    def call(self, name: str, *args: int) -> int:
        if name == "proxy_on_memory_allocate":
            return self.ex[name](self.store, *args)
        self.entry = name.removeprefix("proxy_on_")
        before = self.fuel_mark = self.store.get_fuel()
        try:
            return self.ex[name](self.store, *args)
        finally:
            if self.trace is not None:
                self.trace.append(f"  {self.entry}: {before - self.store.get_fuel():,} wasm instructions in all")

    def _detail(self, name: str, args: tuple) -> str:
        """What a traced call asked for: the key, property path or header name it names."""
        if name == "proxy_log":
            return self.read(args[1], args[2]).decode(errors="replace")
        if name in ("proxy_get_shared_data", "proxy_set_shared_data", "proxy_get_property") or "header_map_value" in name:
            ptr, size = (args[0], args[1]) if "shared" in name or "property" in name else (args[1], args[2])
            return self.read(ptr, size).replace(b"\0", b".").decode(errors="replace")
        return ""

    # memory helpers
    def read(self, ptr: int, size: int) -> bytes:
        return bytes(self.memory.read(self.store, ptr, ptr + size))

    def give(self, data: bytes, ret_ptr: int, ret_size: int) -> int:
        """Copies `data` into memory the module allocates and writes its address and size;
        empty data is a null pointer, as Envoy hands it over (no allocation)."""
        if not data:
            self.memory.write(self.store, struct.pack("<I", 0), ret_ptr)
            self.memory.write(self.store, struct.pack("<I", 0), ret_size)
            return OK
        ptr = self.call("proxy_on_memory_allocate", len(data))
        self.memory.write(self.store, data, ptr)
        self.memory.write(self.store, struct.pack("<I", ptr), ret_ptr)
        self.memory.write(self.store, struct.pack("<I", len(data)), ret_size)
        return OK

    def _counted(self, name: str, ty: wasmtime.FuncType):
        impl = getattr(self, name, None)
        results = ty.results

        def f(_caller, *args):
            self.calls[name] += 1
            if self.trace is not None:
                fuel = self.store.get_fuel()
                self.trace.append(f"  {self.entry}: {name.removeprefix('proxy_')} {self._detail(name, args)}"
                                  f" ({self.fuel_mark - fuel:,} wasm instructions before it)")
                self.fuel_mark = fuel
            if impl is not None:
                return impl(*args)
            return 0 if results else None

        return f

    # the host functions a filter's hot path uses
    def proxy_log(self, level, ptr, size):
        return OK

    def proxy_get_current_time_nanoseconds(self, ret):
        import time

        self.memory.write(self.store, struct.pack("<Q", time.time_ns()), ret)
        return OK

    def proxy_get_buffer_bytes(self, kind, start, size, ret_ptr, ret_size):
        data = self.configuration if kind == PLUGIN_CONFIG else self.bodies.get(kind)
        if data is None:
            return NOT_FOUND
        return self.give(data[start : start + size], ret_ptr, ret_size)

    def proxy_get_header_map_pairs(self, kind, ret_ptr, ret_size):
        pairs = self.maps.get(kind, [])
        out = struct.pack("<I", len(pairs)) + b"".join(struct.pack("<II", len(k), len(v)) for k, v in pairs)
        out += b"".join(k + b"\0" + v + b"\0" for k, v in pairs)
        return self.give(out, ret_ptr, ret_size)

    def proxy_get_header_map_value(self, kind, kp, ks, ret_ptr, ret_size):
        key = self.read(kp, ks)
        for k, v in self.maps.get(kind, []):
            if k == key:
                return self.give(v, ret_ptr, ret_size)
        return NOT_FOUND

    def _set(self, kind, kp, ks, vp=None, vs=None, add=False):
        key = self.read(kp, ks)
        pairs = [(k, v) for k, v in self.maps.get(kind, []) if add or k != key]
        if vp is not None:
            pairs.append((key, self.read(vp, vs)))
        self.maps[kind] = pairs
        return OK

    def proxy_replace_header_map_value(self, kind, kp, ks, vp, vs):
        return self._set(kind, kp, ks, vp, vs)

    def proxy_add_header_map_value(self, kind, kp, ks, vp, vs):
        return self._set(kind, kp, ks, vp, vs, add=True)

    def proxy_remove_header_map_value(self, kind, kp, ks):
        return self._set(kind, kp, ks)

    def proxy_get_property(self, pp, ps, ret_ptr, ret_size):
        value = self.properties.get(self.read(pp, ps).rstrip(b"\0"))
        return NOT_FOUND if value is None else self.give(value, ret_ptr, ret_size)

    def proxy_get_shared_data(self, kp, ks, ret_ptr, ret_size, ret_cas):
        entry = self.shared.get(self.read(kp, ks))
        if entry is None:
            return NOT_FOUND
        self.memory.write(self.store, struct.pack("<I", entry[1]), ret_cas)
        return self.give(entry[0], ret_ptr, ret_size)

    def proxy_set_shared_data(self, kp, ks, vp, vs, cas):
        key = self.read(kp, ks)
        old = self.shared.get(key)
        if cas and old and old[1] != cas:
            return 8  # CasMismatch
        self.shared[key] = (self.read(vp, vs), (old[1] + 1) if old else 1)
        return OK

    def proxy_define_metric(self, kind, np, ns, ret):
        ident = self.metrics.setdefault(self.read(np, ns), len(self.metrics) + 1)
        self.memory.write(self.store, struct.pack("<I", ident), ret)
        return OK

    def proxy_send_local_response(self, status, *_):
        self.local_reply = status
        return OK

    def request(self, ctx: int, headers: list[tuple[str, str]], body: bytes, answer: tuple[list[tuple[str, str]], bytes]) -> dict:
        """Drives one stream as Envoy does for a small body that arrives with the headers'
        packet; returns the callbacks made and the host calls made in them."""
        self.calls.clear()
        self.store.set_fuel(FUEL)
        self.local_reply = None
        self.maps = {REQUEST_HEADERS: [(k.encode(), v.encode()) for k, v in headers]}
        self.bodies = {}
        entries = ["context_create"]
        self.call("proxy_on_context_create", ctx, ROOT_ID)
        entries.append("request_headers")
        action = self.call("proxy_on_request_headers", ctx, len(headers), 0)
        if self.local_reply is None:
            self.bodies[REQUEST_BODY] = body
            entries.append("request_body")
            action = self.call("proxy_on_request_body", ctx, len(body), 1)
        if self.local_reply is None and action == 0:
            self.maps[RESPONSE_HEADERS] = [(k.encode(), v.encode()) for k, v in answer[0]]
            self.bodies[RESPONSE_BODY] = answer[1]
            entries.append("response_headers")
            self.call("proxy_on_response_headers", ctx, len(answer[0]), 0)
            entries.append("response_body")
            self.call("proxy_on_response_body", ctx, len(answer[1]), 1)
        entries += ["log", "done", "delete"]
        self.call("proxy_on_log", ctx)
        self.call("proxy_on_done", ctx)
        self.call("proxy_on_delete", ctx)
        instructions = FUEL - self.store.get_fuel()
        return {"entries": entries, "calls": dict(self.calls), "status": self.local_reply or 200, "instructions": instructions}


def bench_token() -> str:
    key = load_pem_private_key((run.BENCH / "bench-rs256.pem").read_bytes(), password=None)
    claims = {"iss": "mcp-bench", "aud": "mcp-gateway", "sub": "alice", "iat": 1700000000, "exp": 4102444800}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "rs"})


def configuration(key: str) -> str:
    spec = run.GATEWAYS[key]
    if spec.filter_config is not None:
        return json.dumps(spec.filter_config)
    config = yaml.safe_load(spec.config.read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = next(f for f in hcm["http_filters"] if "vm_config" in f["typed_config"].get("config", {}))
    return wasm["typed_config"]["config"].get("configuration", {}).get("value", "")


def kinds(token: str) -> dict[str, tuple[list[tuple[str, str]], bytes, tuple[list[tuple[str, str]], bytes]]]:
    upstream = yaml.safe_load((run.BENCH / "upstream.yaml").read_text())
    routes = upstream["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    answers = [r["direct_response"]["body"]["inline_string"].encode() for r in routes["virtual_hosts"][0]["routes"]]
    list_answer, call_answer = answers[0], answers[-1]
    head = [(":method", "POST"), (":path", "/mcp"), (":authority", "gw"), (":scheme", "http"), ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"), ("authorization", f"Bearer {token}"), ("user-agent", "wrk")]
    answer_head = [(":status", "200"), ("content-type", "application/json")]
    call = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"%s","arguments":{"text":"%s","n":7}}}'
    return {
        "allowed call": (head + [("content-length", "300")], (call % ("echo", "a" * 170)).encode(), (answer_head, call_answer)),
        "denied call": (head + [("content-length", "300")], (call % ("delete_file", "a" * 170)).encode(), (answer_head, call_answer)),
        "tools/list": (head + [("content-length", "60")], b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}', (answer_head, list_answer)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateways", default="T,C,C-full", help="bench gateway keys, comma-separated")
    ap.add_argument("--trace", action="store_true", help="list each host call of a warm request, by callback")
    ap.add_argument("--wasm", type=Path, help="another mcp_guard.wasm (default: the release build)")
    args = ap.parse_args()
    token = bench_token()
    print("| gateway | request | VM entries | host calls | wasm instructions | by function |")
    print("|---|---|---:|---:|---:|---|")
    for key in args.gateways.split(","):
        spec = run.GATEWAYS[key]
        module = args.wasm if args.wasm and spec.module == run.gw.WASM else spec.module
        host = Host(module, configuration(key))
        for ctx, (kind, (head, body, answer)) in enumerate(kinds(token).items(), start=2):
            for warm in range(2):  # metrics defined, caches filled, then read again after what the first wrote
                host.request(ctx * 100 + warm, head, body, answer)
            host.trace = [] if args.trace else None
            r = host.request(ctx * 100 + 2, head, body, answer)
            calls = ", ".join(f"{n.removeprefix('proxy_')} {c}" for n, c in sorted(r["calls"].items(), key=lambda x: -x[1]))
            print(f"| {key} | {kind} ({r['status']}) | {len(r['entries'])} | {sum(r['calls'].values())} | {r['instructions']:,} | {calls} |")
            if host.trace:
                print("\n".join(host.trace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
