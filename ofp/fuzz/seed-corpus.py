#!/usr/bin/env python3
"""Seeds the fuzz corpora with OpenFlow 1.3 messages from encoders that are
not ours: every Ryu `*.packet` (and the truncated FLOW_MOD) and every `hex:`
record of OVS's ofp-print tests.

None of those is a flow-stats reply, the message the reconciler decodes on
every switch connection, and the fuzzer does not assemble a valid one by
itself. So each third-party FLOW_MOD's match and instructions are also
re-framed as the single entry of an OFPMP_FLOW reply: the match and
instruction bytes stay as the third party wrote them.

The corpora are gitignored. Usage: fuzz/seed-corpus.py [CONFORMANCE_DIR]
(default: shared/conformance beside the repository's checkout).
"""

import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OFPT_FLOW_MOD = 14
OFPT_MULTIPART_REPLY = 19
OFPMP_FLOW = 1
# ofp_header + ofp_flow_mod's fixed part: where the match starts.
FLOW_MOD_MATCH_AT = 8 + 40


def third_party(src: Path) -> dict[str, bytes]:
    ryu = src / "ryu" / "of13"
    seeds = {
        f"ryu-{p.name}": p.read_bytes()
        for p in sorted(ryu.iterdir())
        if p.suffix != ".json" and (p.suffix == ".packet" or ".truncated" in p.name)
    }
    text = (src / "ovs" / "ofp-print-of13.txt").read_text()
    hexes = [l[len("hex: ") :] for l in text.splitlines() if l.startswith("hex: ")]
    for n, h in enumerate(hexes, 1):
        seeds[f"ovs-print-{n}"] = bytes.fromhex(h)
    return seeds


def flow_stats_reply(flow_mod: bytes) -> bytes:
    """An OFPMP_FLOW reply whose one entry carries `flow_mod`'s table,
    timeouts, priority, flags, cookie, match and instructions."""
    (cookie,) = struct.unpack_from("!Q", flow_mod, 8)
    table, idle, hard, prio = flow_mod[24], *struct.unpack_from("!HHH", flow_mod, 26)
    (flags,) = struct.unpack_from("!H", flow_mod, 44)
    tail = flow_mod[FLOW_MOD_MATCH_AT:]
    entry_len = 48 + len(tail)
    entry = struct.pack(
        "!HBxIIHHHH4xQQQ", entry_len, table, 7, 500_000_000, prio, idle, hard, flags,
        cookie, 3, 180,
    ) + tail
    body = struct.pack("!HH4x", OFPMP_FLOW, 0) + entry
    xid = flow_mod[4:8]
    return struct.pack("!BBH", 4, OFPT_MULTIPART_REPLY, 8 + len(body)) + xid + body


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "conformance"
    if not (src / "ryu" / "of13").is_dir():
        sys.exit(f"no conformance corpus at {src}: pass its folder as the argument")
    seeds = third_party(src)
    for name, wire in list(seeds.items()):
        whole = len(wire) >= 8 and struct.unpack_from("!H", wire, 2)[0] == len(wire)
        if whole and wire[0] == 4 and wire[1] == OFPT_FLOW_MOD and len(wire) > FLOW_MOD_MATCH_AT:
            seeds[f"flow-stats-of-{name}"] = flow_stats_reply(wire)
    for target in ("decode", "frames"):
        out = HERE / "corpus" / target
        out.mkdir(parents=True, exist_ok=True)
        for name, wire in seeds.items():
            (out / name).write_bytes(wire)
        print(f"{target}: {len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
