"""Bytes each process moves for one pool when RAYSYNTH_HOME is a bucket, measured on a
real S3-compatible server (moto, in this process, on 127.0.0.1).

Every request the server answers is charged to the process on the other end of its TCP
connection (the client's port, looked up with psutil): the driver (this process), the
generation actors, and the trials' loading tasks. One pool is generated with
``--actors`` actors, then loaded by ``--nodes`` stand-in nodes (each a Ray task with a
cache directory of its own, as each node of a cluster has), each node loading twice.

Printed: the pool's bytes in the bucket; bytes read + written by the driver, by the
actors, by the loading nodes; and the ratios the design asks for:

- bytes through the driver / pool bytes (goal <= 0.01: the images never pass through it);
- bytes the actors upload / pool bytes (one upload per image: ~1.0);
- bytes the loading nodes download / (pool bytes x nodes) (one download per node: ~1.0).

    .venv/bin/python benchmarks/pool_transfer.py [--per-class 400] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUCKET = "raysynth-transfer"


class CountingApp:
    """WSGI middleware: bytes received and sent per client process."""

    def __init__(self, app, port: int):
        self.app, self.port = app, port
        self.received, self.sent = defaultdict(int), defaultdict(int)
        self.pids: dict[int, int] = {}
        self.lock = threading.Lock()

    def _pid(self, client_port: int) -> int:
        import psutil

        with self.lock:
            if client_port not in self.pids:
                for c in psutil.net_connections("tcp"):
                    if c.laddr and c.raddr and c.raddr.port == self.port and c.pid:
                        self.pids[c.laddr.port] = c.pid
            return self.pids.get(client_port, -1)

    def __call__(self, environ, start_response):
        pid = self._pid(int(environ.get("REMOTE_PORT", 0)))
        body, counts = environ["wsgi.input"], self

        class Reader:  # counts what the server reads of the request body
            def read(self, *args):
                data = body.read(*args)
                counts.received[pid] += len(data)
                return data

            def readline(self, *args):
                data = body.readline(*args)
                counts.received[pid] += len(data)
                return data

            def __iter__(self):
                return iter(self.readline, b"")

        environ["wsgi.input"] = Reader()
        for chunk in self.app(environ, start_response):
            self.sent[pid] += len(chunk)
            yield chunk


def start_server():
    import logging

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    from raysynth.testing.fake_cluster import free_port

    port = free_port()
    counting = CountingApp(DomainDispatcherApplication(create_backend_app), port)
    server = make_server("127.0.0.1", port, counting, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counting, f"http://127.0.0.1:{port}"


def _load_on_node(env: dict, key: str) -> tuple[int, int]:
    """A trial's load of the pool on a node with its own cache (twice: the second load
    must not download again). Returns (this process's pid, images)."""
    from raysynth.home import adopt_home
    from raysynth.pool import PoolStore

    adopt_home(env)
    for _ in range(2):
        pool = PoolStore().load(key)
    return os.getpid(), len(pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=400, help="images per class (10 digit classes)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=2, help="stand-in nodes that load the pool")
    args = parser.parse_args()

    server, counts, endpoint = start_server()
    scratch = Path(tempfile.mkdtemp(prefix="rs-transfer-"))
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint, "RAYSYNTH_HOME": f"s3://{BUCKET}/home-{int(time.time())}",
        "RAYSYNTH_CACHE": str(scratch / "driver"),
    })
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    import ray

    sys.path.insert(0, str(REPO))
    from raysynth.context import split_of
    from raysynth.home import home_env
    from raysynth.pool import PoolStore
    from raysynth.pool.pipeline import generate_pool
    from raysynth.validate import load_config

    config = load_config(REPO / "search_spaces" / "digits.yaml", [
        f"pool.per_class={args.per_class}", f"data.image_size={args.image_size}", "pool.generator=morph",
        "pool.options={}", f"pool.actors={args.actors}", "pool.shard_size=100", "pool.clip_model=null",
        "pool.clip_pretrained=null", "pool.filter=none",
    ])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    split = split_of(config)
    before = dict(counts.received), dict(counts.sent)  # the dataset's own reads, if any, are not the pool's
    start = time.perf_counter()
    key, made = generate_pool(split, config.pool, store=PoolStore(),
                              resources={"num_cpus": 0.5, "num_gpus": 0.0}, wait_s=300)
    print(f"pool {key}: {len(split.classes) * args.per_class} images of {args.image_size} px generated by "
          f"{args.actors} actors in {time.perf_counter() - start:.1f} s")
    nodes = []
    for i in range(args.nodes):
        env = {**home_env(), "RAYSYNTH_CACHE": str(scratch / f"node{i}")}
        nodes.append(ray.get(ray.remote(num_cpus=0.5)(_load_on_node).remote(env, key)))
    ray.shutdown()
    after = dict(counts.received), dict(counts.sent)  # before this script's own listing below

    s3 = boto3.client("s3", endpoint_url=endpoint)
    prefix = os.environ["RAYSYNTH_HOME"].split(f"s3://{BUCKET}/", 1)[1] + f"/pools/{key}/"
    pool_bytes = sum(o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                     for o in page.get("Contents", []))
    driver = os.getpid()
    loaders = {pid for pid, _ in nodes}

    def moved(pids) -> tuple[int, int]:
        read = sum(v - before[1].get(p, 0) for p, v in after[1].items() if p in pids)
        written = sum(v - before[0].get(p, 0) for p, v in after[0].items() if p in pids)
        return read, written

    everyone = set(after[0]) | set(after[1])
    d_read, d_written = moved({driver})
    l_read, l_written = moved(loaders)
    a_read, a_written = moved(everyone - loaders - {driver})
    server.shutdown()
    mb = 1e6
    print(f"pool in the bucket: {pool_bytes / mb:.1f} MB")
    print(f"driver:  read {d_read / mb:8.2f} MB, written {d_written / mb:8.2f} MB")
    print(f"actors:  read {a_read / mb:8.2f} MB, written {a_written / mb:8.2f} MB")
    print(f"{args.nodes} loading nodes (2 loads each): read {l_read / mb:8.2f} MB, written {l_written / mb:8.2f} MB")
    print(f"bytes through the driver / pool bytes: {(d_read + d_written) / pool_bytes:.4f} (goal <= 0.01)")
    print(f"actor uploads / pool bytes: {a_written / pool_bytes:.3f} (one upload per image: ~1)")
    print(f"node downloads / (pool bytes x {args.nodes} nodes): {l_read / (pool_bytes * args.nodes):.3f} (one download per node: ~1)")


if __name__ == "__main__":
    main()
