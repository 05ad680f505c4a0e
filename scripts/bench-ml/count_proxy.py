#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that counts the bytes it carries each way (stdlib
only). The ML-stack race puts it in front of the loopback registry, so that
the bytes every tool uploads (pushes) and downloads (pulls) are measured the
same way, on the wire, whatever the tool reports.

    count_proxy.py TARGET_PORT    prints two lines: the proxy's port and the
                                  stats port, then serves until killed

GET http://127.0.0.1:<stats port>/ answers {"up": n, "down": n}: bytes from
clients to the target, and back, since the proxy started. Read it before and
after a command; the difference is what that command moved (HTTP headers
included, a few hundred bytes a request).
"""
import asyncio
import json
import sys

target_port = int(sys.argv[1])
counts = {"up": 0, "down": 0}


async def pipe(reader, writer, key):
    try:
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            counts[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def relay(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pipe(client_reader, server_writer, "up"),
        pipe(server_reader, client_writer, "down"),
    )


async def report(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    body = json.dumps(counts).encode()
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    writer.close()


async def main():
    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    stats = await asyncio.start_server(report, "127.0.0.1", 0)
    print(proxy.sockets[0].getsockname()[1], flush=True)
    print(stats.sockets[0].getsockname()[1], flush=True)
    await asyncio.gather(proxy.serve_forever(), stats.serve_forever())


asyncio.run(main())
