#!/usr/bin/env python3
"""Read a petl sparse diff (format version 1) with nothing but the standard library.

An independent second reader of docs/sparse-diff-format.md: it lets a user inspect a diff
without building petl, and cross-checks the Rust implementation (crates/petl-sparse).

    python3 scripts/read_sparse_diff.py DIFF                 # per tensor: name, shape, nnz, first entries
    python3 scripts/read_sparse_diff.py DIFF --head 10       # show 10 entries per tensor
    python3 scripts/read_sparse_diff.py DIFF --json out.json # full dump ('-' for stdout)

Exits with status 1 and a message on a file that is not a valid version-1 diff.
"""

import argparse
import json
import math
import struct
import sys
import zlib

MAGIC = b"PETLSDIF"
VERSION = 1
MAX_RICE_K = 63


class FormatError(Exception):
    """The file violates the format."""


class BitReader:
    """LSB-first bit stream: stream bit b is bit (b % 8) of byte b // 8."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.len_bits = len(data) * 8

    def bit(self):
        if self.pos >= self.len_bits:
            raise EOFError
        b = (self.data[self.pos >> 3] >> (self.pos & 7)) & 1
        self.pos += 1
        return b

    def bits(self, n):
        """n bits, the first read being the least significant."""
        if self.len_bits - self.pos < n:
            raise EOFError
        v = 0
        for i in range(n):
            v |= self.bit() << i
        return v

    def unary(self):
        q = 0
        while self.bit():
            q += 1
        return q


def decode_rice(name, section, nnz, numel, k):
    if k > MAX_RICE_K:
        raise FormatError(f"{name}: rice parameter k={k} exceeds {MAX_RICE_K}")
    r = BitReader(section)
    positions, nxt = [], 0
    try:
        for _ in range(nnz):
            q = r.unary()
            gap = (q << k) | r.bits(k)
            p = nxt + gap
            if p >= numel:
                raise FormatError(f"{name}: position {p} out of range for {numel} elements")
            positions.append(p)
            nxt = p + 1
    except EOFError:
        raise FormatError(f"{name}: rice stream ends inside a gap") from None
    used = r.pos
    if (used + 7) // 8 != len(section):
        raise FormatError(f"{name}: rice stream of {used} bits followed by unused bytes")
    if used % 8 and r.bits(8 - used % 8) != 0:
        raise FormatError(f"{name}: nonzero padding bits")
    return positions, used


def decode_bitmap(name, section, nnz, numel):
    if len(section) != (numel + 7) // 8:
        raise FormatError(f"{name}: bitmap of {numel} elements needs {(numel + 7) // 8} bytes")
    positions = []
    for i, byte in enumerate(section):
        for bit in range(8):
            if byte >> bit & 1:
                p = i * 8 + bit
                if p >= numel:
                    raise FormatError(f"{name}: bitmap padding bit {p} is set")
                positions.append(p)
    if len(positions) != nnz:
        raise FormatError(f"{name}: bitmap has {len(positions)} set bits but nnz is {nnz}")
    return positions, numel


def bf16_to_float(u16):
    return struct.unpack("<f", struct.pack("<I", u16 << 16))[0]


def decode_values(section, dtype, nnz):
    if dtype == "f32":
        return list(struct.unpack(f"<{nnz}f", section))
    if dtype == "f16":
        return list(struct.unpack(f"<{nnz}e", section))
    if dtype == "bf16":
        return [bf16_to_float(u) for u in struct.unpack(f"<{nnz}H", section)]
    raise FormatError(f"unknown value dtype {dtype!r}")


def log2_binomial(n, k):
    """log2 C(n, k) via lgamma: fine for display, not for the 1e-9 accuracy the Rust code has."""
    if k > n:
        return float("nan")
    k = min(k, n - k)
    if k == 0:
        return 0.0
    if k < 64:
        return sum(math.log2((n - k + i) / i) for i in range(1, k + 1))
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def read(blob):
    """Parse and validate a whole file; returns (dtype, [tensor dict, ...])."""
    if blob[: len(MAGIC)] != MAGIC[: min(len(blob), len(MAGIC))]:
        raise FormatError("not a petl sparse diff (bad magic)")
    if len(blob) < 20:
        raise FormatError(f"truncated: {len(blob)} bytes")
    version, header_len = struct.unpack_from("<II", blob, 8)
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this reader supports {VERSION})")
    if len(blob) < 20 + header_len:
        raise FormatError(f"truncated: needs {20 + header_len} bytes, has {len(blob)}")
    (stored,) = struct.unpack_from("<I", blob, len(blob) - 4)
    computed = zlib.crc32(blob[:-4]) & 0xFFFFFFFF
    if stored != computed:
        raise FormatError(f"checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
    header = json.loads(blob[16 : 16 + header_len].decode("utf-8"))
    data = blob[16 + header_len : -4]
    dtype = header["value_dtype"]
    width = {"f32": 4, "f16": 2, "bf16": 2}.get(dtype)
    if width is None:
        raise FormatError(f"unknown value dtype {dtype!r}")

    tensors, seen = [], set()
    for e in header["tensors"]:
        name, shape, nnz, enc = e["name"], e["shape"], e["nnz"], e["encoding"]
        if name in seen:
            raise FormatError(f"tensor {name!r} appears twice")
        seen.add(name)
        numel = math.prod(shape)
        if numel >= 2**64:
            raise FormatError(f"{name}: shape {shape} overflows")
        if nnz > numel:
            raise FormatError(f"{name}: nnz {nnz} exceeds numel {numel}")
        if e["values_bytes"] != nnz * width:
            raise FormatError(f"{name}: values section has {e['values_bytes']} bytes, needs {nnz * width}")

        def section(what):
            off, n = e[f"{what}_offset"], e[f"{what}_bytes"]
            if off + n > len(data):
                raise FormatError(f"{name}: {what} section lies outside the data section")
            return data[off : off + n]

        pos_sec, val_sec = section("positions"), section("values")
        kind = enc["kind"]
        if kind == "empty":
            if nnz or pos_sec:
                raise FormatError(f"{name}: 'empty' with entries")
            positions, bits = [], 0
        elif kind == "rice":
            positions, bits = decode_rice(name, pos_sec, nnz, numel, enc["k"])
        elif kind == "bitmap":
            positions, bits = decode_bitmap(name, pos_sec, nnz, numel)
        else:
            raise FormatError(f"{name}: unknown position encoding {kind!r}")
        values = decode_values(val_sec, dtype, nnz)
        if not all(math.isfinite(v) for v in values):
            raise FormatError(f"{name}: non-finite value")
        tensors.append(
            {
                "name": name,
                "shape": shape,
                "numel": numel,
                "nnz": nnz,
                "encoding": enc,
                "position_bits": bits,
                "bound_bits": log2_binomial(numel, nnz),
                "positions": positions,
                "values": values,
            }
        )
    return dtype, tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--head", type=int, default=5, help="entries to show per tensor (default 5)")
    ap.add_argument("--json", metavar="OUT", help="dump everything as JSON to OUT ('-' = stdout)")
    args = ap.parse_args()

    with open(args.path, "rb") as f:
        blob = f.read()
    try:
        dtype, tensors = read(blob)
    except FormatError as e:
        print(f"{args.path}: invalid sparse diff: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError) as e:
        # A header without the expected fields or types, or not JSON / UTF-8.
        print(f"{args.path}: invalid sparse diff header: {e!r}", file=sys.stderr)
        return 1

    if args.json:
        doc = {"file_bytes": len(blob), "value_dtype": dtype, "tensors": tensors}
        if args.json == "-":
            json.dump(doc, sys.stdout, indent=1)
            print()
        else:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
        return 0

    nnz = sum(t["nnz"] for t in tensors)
    pbits = sum(t["position_bits"] for t in tensors)
    print(f"{args.path}: {len(blob)} bytes, {len(tensors)} tensors, nnz {nnz}, values {dtype}, "
          f"position bits {pbits}")
    for t in tensors:
        enc = t["encoding"]["kind"] + (f"(k={t['encoding']['k']})" if t["encoding"]["kind"] == "rice" else "")
        h = args.head
        print(f"  {t['name']}  shape={t['shape']}  nnz={t['nnz']}  {enc}  "
              f"{t['position_bits']} bits (bound {t['bound_bits']:.1f})")
        if t["nnz"]:
            more = " ..." if t["nnz"] > h else ""
            print(f"    positions {t['positions'][:h]}{more}")
            print(f"    values    {[float(f'{v:.7g}') for v in t['values'][:h]]}{more}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
