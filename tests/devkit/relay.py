"""A TCP relay from the node IP to the API server on loopback, run as its own process.

The API server listens on 127.0.0.1 only, and an Endpoint may not be a loopback address, so
pods could not reach it through the ``kubernetes`` Service. The node runs this relay on its
own IP and points an EndpointSlice of that Service at it (devkit.node). TLS passes through
untouched: pods verify the API server's certificate as usual.

python -m devkit.relay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT [--owner DIR]
(``--owner`` only marks the process as the node's, for its cleanup.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def _serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def relay(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pipe(client_reader, server_writer), _pipe(server_reader, client_writer)
        )

    server = await asyncio.start_server(relay, *listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen_host")
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--owner", default="")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve((args.listen_host, args.listen_port), (args.target_host, args.target_port))
        )


if __name__ == "__main__":
    main()
