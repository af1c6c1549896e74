"""For the browser test of `parley serve --workers 2`: wait for both workers, make a room, and print the
page URL of the worker that does *not* hold it, with a join token — so the page's SDK must follow the
server's redirect to the other worker.   cluster_page.py <shared base URL>   (admin key: $PARLEY_AUTH__API_KEY)"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from parley.signaling.client import ParleyAdmin


async def main(shared: str) -> str:
    async with ParleyAdmin(shared, os.environ["PARLEY_AUTH__API_KEY"]) as admin:
        deadline = time.monotonic() + 120
        while len(nodes := await admin.nodes()) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(nodes)} worker(s) came up")
            await asyncio.sleep(0.5)
        await admin.create_room("e2e-cluster")
        token = await admin.token("e2e-cluster", "browser", name="Browser")
    other = next(n for n in nodes if not token["ws_url"].startswith(n["ws_url"]))
    print(f"cluster: room on {token['ws_url'].split('?')[0]}, page from {other['url']}", file=sys.stderr)
    return f"{other['url']}/?room=e2e-cluster&token={token['token']}"


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1])))
