#!/usr/bin/python3
"""Availability probes, independent of nsfw.

  probe.py listen PORT FILE        count UDP datagrams arriving on PORT, writing the count to FILE
  probe.py send HOST PORT SECS MS  one datagram every MS ms for SECS seconds, each from a fresh
                                   socket (a new flow, never conntrack's established); prints
                                   how many were sent
"""
import socket
import sys
import time


def listen(port, path):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    with open(path, "w") as f:
        f.write("0\n")
    n = 0
    while True:
        s.recv(64)
        n += 1
        with open(path, "w") as f:
            f.write(f"{n}\n")


def send(host, port, secs, ms):
    end = time.monotonic() + secs
    nxt = time.monotonic()
    n = 0
    while time.monotonic() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.sendto(b"probe", (host, port))
        except OSError:
            pass
        s.close()
        n += 1
        nxt += ms / 1000.0
        time.sleep(max(0.0, nxt - time.monotonic()))
    print(n)


if __name__ == "__main__":
    if sys.argv[1] == "listen":
        listen(int(sys.argv[2]), sys.argv[3])
    else:
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
