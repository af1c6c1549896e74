"""Child process: run llama.cpp's OpenAI-compatible server (xllamacpp) on loopback until stdin closes.

Started by :class:`parley.agents.llm.embedded.EmbeddedLlm`; it prints one JSON line with the address
when the model is loaded, and exits when its parent goes away (stdin reaches EOF).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--cache-ram", type=int, default=256, help="MiB of host RAM for saved prompt states")
    parser.add_argument("--nice", type=int, default=0, help="scheduling niceness added before loading (0-19)")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)  # llama.cpp's threads, started below, inherit it

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.context
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.port = args.port
    params.hostnames = ["127.0.0.1"]
    params.cache_prompt = True  # keeps the shared system prompt warm between turns
    # When the history window slides, the prompt's prefix changes; reuse cached chunks by KV shifting
    # instead of re-evaluating the whole history (seconds on a CPU).
    params.n_cache_reuse = 64
    # llama.cpp keeps prompt states of past requests in host RAM, up to 8 GiB by default: the child
    # grew ~50 MB a minute in a one-call soak. Capped (MiB; 0: off).
    params.cache_ram_mib = args.cache_ram
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # the binding raises RuntimeError on a bad model file
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"address": server.listening_address}), flush=True)
    sys.stdin.read()  # block until the parent closes our stdin or dies
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
