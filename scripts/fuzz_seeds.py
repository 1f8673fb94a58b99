#!/usr/bin/env python3
"""Write every frame of the spec's test vectors as one seed file for the fuzzers.

usage: fuzz_seeds.py VECTORS.txt OUTDIR
"""
import os
import re
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    vectors, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    count = 0
    name = "seed"
    with open(vectors, encoding="utf-8") as f:
        for line in f:
            head = re.match(r"### (\w+)", line)
            if head:
                name = head.group(1)
            m = re.match(r"frame \(\d+ B\): (.*)$", line.strip())
            if m:
                data = bytes.fromhex(m.group(1).replace(" ", ""))
                with open(os.path.join(outdir, name), "wb") as out:
                    out.write(b"\x00" + data)  # first byte: where the harness splits the input
                count += 1
    print(f"{count} seeds in {outdir}")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
