#!/usr/bin/env python3
"""delayproxy: a TCP proxy that adds a fixed delay to each direction.

The kernel here has no netem, so the shaped link gets its latency from this
proxy: every chunk read from one side is written to the other side DELAY ms
after it was read, so each request and each response pays DELAY and an HTTP
round trip pays 2 * DELAY.  (The TCP handshake is answered by the kernel
and is not delayed.)  The rate limit is tbf's job, not ours.

At most --queue-bytes are held per direction: past that we stop reading, so
TCP back-pressure still works.  The bound is in bytes, not chunks: a bound
in chunks caps the throughput when the reads are small.

usage: delayproxy.py --listen HOST:PORT --target HOST:PORT [--delay-ms 10]
"""
import argparse
import asyncio
import collections
import socket
import sys


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


async def pump(reader, writer, delay, qmax):
    """Copy reader to writer, each chunk released `delay` s after its read."""
    loop = asyncio.get_running_loop()
    queue = collections.deque()
    cond = asyncio.Condition()
    state = {"held": 0, "eof": False}

    async def feed():
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                async with cond:
                    await cond.wait_for(
                        lambda: state["held"] == 0
                        or state["held"] + len(data) <= qmax)
                    queue.append((loop.time() + delay, data))
                    state["held"] += len(data)
                    cond.notify_all()
        except (ConnectionError, OSError):
            pass
        finally:
            async with cond:
                state["eof"] = True
                cond.notify_all()

    async def drain():
        while True:
            async with cond:
                await cond.wait_for(lambda: queue or state["eof"])
                if not queue:
                    break
                due, data = queue.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            async with cond:
                state["held"] -= len(data)
                cond.notify_all()
        if writer.can_write_eof():
            writer.write_eof()

    feeder = asyncio.ensure_future(feed())
    try:
        await drain()
    except (ConnectionError, OSError):
        pass
    finally:
        feeder.cancel()


async def serve(args):
    delay = args.delay_ms / 1000.0
    thost, tport = hostport(args.target)

    async def handle(creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection(thost, tport)
        except OSError as e:
            print(f"delayproxy: connect {args.target}: {e}", file=sys.stderr)
            cwriter.close()
            return
        for w in (cwriter, uwriter):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            pump(creader, uwriter, delay, args.queue_bytes),
            pump(ureader, cwriter, delay, args.queue_bytes))
        for w in (cwriter, uwriter):
            w.close()

    host, port = hostport(args.listen)
    server = await asyncio.start_server(handle, host, port, backlog=256)
    print(f"delayproxy {args.listen} -> {args.target}, +{args.delay_ms} ms "
          f"each way, queue {args.queue_bytes} B", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=float, default=10.0)
    p.add_argument("--queue-bytes", type=int, default=4 << 20)
    try:
        asyncio.run(serve(p.parse_args()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
