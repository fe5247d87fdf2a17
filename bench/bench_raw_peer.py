"""The raw baseline of ``bench_node.py``: a plain trio + msgpack socket pair, no eco at all.

Run as a child process by ``bench_node.py``::

    python bench/bench_raw_peer.py

The peer listens on a free loopback port (printed as one line on stdout) and serves one
connection.  Each message is a msgpack array ``[tag, seq, payload]``:

* ``tag 0`` (one-way): counted; once ``seq == -1`` arrives the peer answers
  ``[2, count, b""]`` so the sender can stop its clock;
* ``tag 1`` (ping): echoed back at once as ``[1, seq, payload]``.

Receives are decoded with msgpack's streaming ``Unpacker``; replies are
written immediately.  This is the "same work" the Node bench does, minus the
runtime: framing, decoding, dispatch and one write per batch of frames.
"""

from __future__ import annotations

import msgpack
import trio


async def _serve(stream: trio.SocketStream) -> None:
    unpacker = msgpack.Unpacker()
    pack = msgpack.Packer().pack
    count = 0
    while True:
        data = await stream.receive_some(65536)  # the eco node's read size
        if not data:
            return
        unpacker.feed(data)
        out = bytearray()
        for tag, seq, payload in unpacker:
            if tag == 0:
                if seq == -1:
                    out += pack((2, count, b""))
                    count = 0
                else:
                    count += 1
            elif tag == 1:
                out += pack((1, seq, payload))
        if out:
            await stream.send_all(out)


async def main() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    stream = await listeners[0].accept()
    async with stream:
        await _serve(stream)


if __name__ == "__main__":
    trio.run(main)
