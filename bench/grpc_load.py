"""A gRPC load generator: C concurrent clients send one unary request over and over for D seconds.

Runs in its own process (asyncio, grpc.aio) so that the server under test keeps its own interpreter.
Prints one JSON line: requests, seconds, requests/s, latency percentiles (ms), errors by code.

    python bench/grpc_load.py --target 127.0.0.1:50051 --method /pkg.Service/Method --request FILE \
        --concurrency 16 --seconds 10 [--warmup 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np


async def _worker(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes,
    stop_at: float,
    record_from: float,
    latencies: list[float],
    errors: Counter[str],
) -> None:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    while True:
        start = time.perf_counter()
        if start >= stop_at:
            return
        try:
            await call(payload, timeout=10)
            code = "OK"
        except grpc.aio.AioRpcError as err:
            code = err.code().name
        if start >= record_from:
            latencies.append(time.perf_counter() - start)
            if code != "OK":
                errors[code] += 1


async def _run(
    target: str, method: str, payload: bytes, concurrency: int, seconds: float, warmup: float
) -> dict[str, object]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    # one connection per client: a local subchannel pool stops gRPC from sharing one TCP connection among them
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(concurrency)]
    now = time.perf_counter()
    record_from, stop_at = now + warmup, now + warmup + seconds
    await asyncio.gather(
        *(
            _worker(channels[i % len(channels)], method, payload, stop_at, record_from, latencies, errors)
            for i in range(concurrency)
        )
    )
    for channel in channels:
        await channel.close()
    lat_ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 3) if len(lat_ms) else None,
        "p90_ms": round(float(np.percentile(lat_ms, 90)), 3) if len(lat_ms) else None,
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 3) if len(lat_ms) else None,
        "errors": dict(errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--request", type=Path, required=True, help="file with the serialised request message")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    result = asyncio.run(
        _run(args.target, args.method, args.request.read_bytes(), args.concurrency, args.seconds, args.warmup)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
