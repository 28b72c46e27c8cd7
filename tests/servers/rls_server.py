#!/usr/bin/env python3
"""A test-only Envoy Rate Limit Service (gRPC `envoy.service.ratelimit.v3.RateLimitService/
ShouldRateLimit`) backed by a real Redis, counting like envoyproxy/ratelimit does: fixed
windows of the limit's unit, one Redis counter per descriptor and window
(`<domain>_<key>_<value>_..._<window start>`), INCRBY + EXPIRE, OVER_LIMIT when a counter
would pass `requests_per_unit`.

One difference, on purpose: the check and the increments of all descriptors of a request run
in one Lua script, and when any descriptor is over its limit none is incremented (a refused
call consumes from none, as mcp-guard promises for its own buckets). envoyproxy/ratelimit
increments every descriptor regardless.

    rls_server.py --port 0 --redis-port 6390 --limits '{"mcp-guard": {"exact": [20, "minute"]}}'

`--limits`: domain -> limit name (the descriptor's first entry, `limit`) -> [requests, unit].
`--delay` makes every answer late. Prints `ready <port>` once serving. Messages come from tests/rls/rls.proto (Envoy's field
numbers), compiled with grpcio-tools at start.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import redis
from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parents[1] / "rls"
UNITS = {"second": (1, 1), "minute": (2, 60), "hour": (3, 3600), "day": (4, 86400)}

# KEYS: one counter per descriptor. ARGV: hits, then each counter's limit and ttl.
# Returns {over, counts...}: with over = 0 the counters after adding `hits` to each; with
# over = 1 the counters untouched (at least one would have passed its limit).
CHECK_AND_COUNT = """
local hits = tonumber(ARGV[1])
local over = false
local counts = {}
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  counts[i] = count
  if count + hits > tonumber(ARGV[2 * i]) then over = true end
end
if not over then
  for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCRBY', key, hits)
    redis.call('EXPIRE', key, tonumber(ARGV[2 * i + 1]))
  end
end
table.insert(counts, 1, over and 1 or 0)
return counts
"""


def load_messages() -> tuple[object, object]:
    out = Path(tempfile.mkdtemp(prefix="rls-proto-"))
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO_DIR / "rls.proto")])
    if rc != 0:
        raise SystemExit(f"protoc failed: {rc}")
    sys.path.insert(0, str(out))
    return importlib.import_module("rls_pb2"), importlib.import_module("rls_pb2_grpc")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--limits", required=True)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer (timeout tests)")
    args = ap.parse_args()
    limits: dict[str, dict[str, list]] = json.loads(args.limits)
    pb, pb_grpc = load_messages()
    store = redis.Redis(host="127.0.0.1", port=args.redis_port)
    script = store.register_script(CHECK_AND_COUNT)
    Response = pb.RateLimitResponse  # type: ignore[attr-defined]

    class Service(pb_grpc.RateLimitServiceServicer):  # type: ignore[attr-defined,misc,name-defined]
        def ShouldRateLimit(self, request, context):  # noqa: N802 (gRPC method name)
            time.sleep(args.delay)
            hits = request.hits_addend or 1
            now = time.time()
            keys, argv, plans = [], [hits], []
            for d in request.descriptors:
                entries = [(e.key, e.value) for e in d.entries]
                name = entries[0][1] if entries and entries[0][0] == "limit" else None
                spec = limits.get(request.domain, {}).get(name or "")
                if spec is None:
                    plans.append(None)
                    continue
                per_unit, unit = spec[0], spec[1]
                code, seconds = UNITS[unit]
                window = int(now // seconds) * seconds
                key = "_".join([request.domain, *(f"{k}_{v}" for k, v in entries), str(window)])
                keys.append(key)
                argv += [per_unit, seconds]
                plans.append((per_unit, code, window + seconds))
            result = script(keys=keys, args=argv) if keys else [0]
            refused = result[0] == 1
            counts = iter(result[1:])
            statuses, overall = [], Response.OK
            for plan in plans:
                if plan is None:
                    statuses.append(Response.DescriptorStatus(code=Response.OK))
                    continue
                per_unit, code, reset_at = plan
                count = int(next(counts))
                # Refused: the counters were not touched, and these descriptors would pass theirs.
                over = refused and count + hits > per_unit
                status = Response.DescriptorStatus(
                    code=Response.OVER_LIMIT if over else Response.OK,
                    current_limit=Response.RateLimit(requests_per_unit=per_unit, unit=code),
                    limit_remaining=max(0, per_unit - count),
                )
                left = max(0.0, reset_at - now)
                status.duration_until_reset.seconds = int(left)
                status.duration_until_reset.nanos = int((left - int(left)) * 1e9)
                statuses.append(status)
                if over:
                    overall = Response.OVER_LIMIT
            return Response(overall_code=overall, statuses=statuses)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_RateLimitServiceServicer_to_server(Service(), server)  # type: ignore[attr-defined]
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"ready {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
