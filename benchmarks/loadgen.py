"""A closed-loop HTTP load generator: C connections, each sending its next request when the last one answered.

Written on asyncio streams with a minimal HTTP/1.1 client (keep-alive, Content-Length
bodies) so that the generator itself costs a few tens of microseconds per request:
on a small machine a heavier client would share the CPU with the server it measures
and flatten the differences between servers. Every server under test faces the same
generator, the same payloads and the same concurrency.

    python -m benchmarks.loadgen --url http://127.0.0.1:5080/invocations --payloads payloads.json \\
        --concurrency 8 --seconds 10 --warmup 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


class ServerError(RuntimeError):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            raise ServerError("chunked responses are not supported by this generator")
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    started: float,
    warmup: float,
    stop_at: float,
    latencies: list[float],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    try:
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            writer.write(requests[index % len(requests)])
            index += 1
            try:
                status, body = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise ServerError(f"the server closed the connection: {exc!r}") from None
            answered = time.perf_counter()
            if status != 200:
                # a figure measured on error answers would mean nothing
                raise ServerError(f"a request failed with {status}: {body[:300]!r}")
            if sent >= started + warmup:
                latencies.append(answered - sent)
    finally:
        writer.close()


def build_requests(url: str, payloads: list[bytes]) -> tuple[str, int, list[bytes]]:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    path = parts.path or "/"
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in payloads
    ]
    return host, port, requests


async def run_load(url: str, payloads: list[bytes], concurrency: int, seconds: float, warmup: float) -> dict:
    host, port, requests = build_requests(url, payloads)
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + warmup + seconds
    step = max(1, len(requests) // concurrency)
    await asyncio.gather(
        *(
            _connection(host, port, requests, connection * step, started, warmup, stop_at, latencies)
            for connection in range(concurrency)
        )
    )
    if not latencies:
        raise ServerError(f"no request was answered within {warmup + seconds:.1f}s")
    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": len(latencies),
        "throughput": len(latencies) / seconds,
        "p50_ms": 1000 * percentile(0.50),
        "p99_ms": 1000 * percentile(0.99),
        "max_ms": 1000 * latencies[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--payloads", required=True, help="a JSON list of request bodies (JSON objects)")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    with open(args.payloads) as handle:
        payloads = [json.dumps(body, separators=(",", ":")).encode() for body in json.load(handle)]
    try:
        from uvloop import run  # the faster event loop, when installed (uvicorn's own)
    except ImportError:
        run = asyncio.run
    result = run(run_load(args.url, payloads, args.concurrency, args.seconds, args.warmup))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
