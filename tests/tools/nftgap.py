#!/usr/bin/python3
"""How long another process's deletions in an nftables table stay unrepaired, independent of nsfw.

  nftgap.py TABLE SECS [-v]  listen to nf_tables' notifications (NFNLGRP_NFTABLES) for SECS seconds;
                         each transaction that deletes inet TABLE, or elements of it, opens a
                         gap that the next transaction adding the table (or, for elements,
                         adding elements to that set) closes. Prints one JSON object: the gaps'
                         count, median, 90th percentile, max and sum in ms, and those never
                         closed (-v: every gap too).

Times are when this process read each transaction's closing NEWGEN: both ends of a gap are read
the same way, so the reading delay mostly cancels.
"""
import json
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NEWTABLE, DELTABLE, NEWSETELEM, DELSETELEM, NEWGEN = 0, 2, 12, 14, 15


def attrs(b):
    out = {}
    while len(b) >= 4:
        ln, ty = struct.unpack_from("=HH", b)
        if ln < 4:
            break
        out.setdefault(ty & 0x3FFF, b[4:ln])
        b = b[(ln + 3) & ~3:]
    return out


def cstr(b):
    return b.split(b"\0", 1)[0].decode(errors="replace")


def main(table, secs, verbose=False):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.settimeout(0.2)
    print("listening", file=sys.stderr, flush=True)
    end = time.monotonic() + secs
    open_since = {}  # what was deleted ("table" or a set's name) -> when
    gaps = []
    pending = []  # (msg, set) of the transaction being read
    while time.monotonic() < end:
        try:
            data = s.recv(1 << 20)
        except socket.timeout:
            continue
        now = time.monotonic()
        while len(data) >= 16:
            ln, ty = struct.unpack_from("=IH", data)
            if ln < 16:
                break
            body = data[16 + 4 : ln]
            fam = data[16]
            data = data[(ln + 3) & ~3 :]
            if ty >> 8 != 10:
                continue
            msg = ty & 0xFF
            if msg == NEWGEN:
                for m, st in pending:
                    if m == DELTABLE:
                        open_since.setdefault("table", now)
                    elif m == DELSETELEM:
                        open_since.setdefault(st, now)
                    elif m == NEWTABLE and "table" in open_since:
                        gaps.append(now - open_since.pop("table"))
                    elif m == NEWSETELEM and st in open_since:
                        gaps.append(now - open_since.pop(st))
                pending = []
                continue
            a = attrs(body)
            if fam != 1 or cstr(a.get(1, b"")) != table:
                continue
            pending.append((msg, cstr(a.get(2, b""))))
    ms = sorted(g * 1000 for g in gaps)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) if ms else None
    print(
        json.dumps(
            {
                "gaps": len(ms),
                "median_ms": pick(0.5),
                "p90_ms": pick(0.9),
                "max_ms": round(ms[-1], 2) if ms else None,
                "sum_ms": round(sum(ms), 1),
                "unclosed": len(open_since),
                **({"all_ms": [round(g, 2) for g in ms]} if verbose else {}),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), "-v" in sys.argv[3:])
