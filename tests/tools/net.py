#!/usr/bin/python3
"""Test witnesses, independent of nsfw: servers that answer with the source address they
saw, a client that prints the answer, and a sender of spoofed datagrams.

  net.py serve tcp|udp PORT [PORT...]   answer every connection/datagram with the peer's address
  net.py ask tcp|udp HOST PORT          print the answer; exit 1 when none comes (refused, dropped)
  net.py spoof SRC DST PORT             one UDP datagram from SRC (a raw socket, IP_HDRINCL)
"""
import socket
import struct
import sys
import threading


def serve(proto, ports):
    def tcp(port):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(64)
        while True:
            c, peer = s.accept()
            try:
                c.sendall((peer[0] + "\n").encode())
            finally:
                c.close()

    def udp(port):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, port))
        while True:
            _, peer = s.recvfrom(2048)
            s.sendto((peer[0] + "\n").encode(), peer)

    host = "::" if proto.endswith("6") else "0.0.0.0"
    fn = tcp if proto.startswith("tcp") else udp
    for p in ports:
        threading.Thread(target=fn, args=(int(p),), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def ask(proto, host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    if proto.startswith("tcp"):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((host, int(port)))
            data = s.recv(256)
        except OSError as e:
            print(f"no answer: {e}", file=sys.stderr)
            return 1
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(1)
        data = None
        for _ in range(3):
            try:
                s.sendto(b"nsfw-test", (host, int(port)))
                data, _ = s.recvfrom(256)
                break
            except OSError:
                continue
        if data is None:
            print("no answer", file=sys.stderr)
            return 1
    print(data.decode().strip())
    return 0


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def spoof(src, dst, port):
    payload = b"spoofed"
    udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    for _ in range(3):
        s.sendto(ip + udp, (dst, 0))
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2], sys.argv[3:])
    elif cmd == "ask":
        sys.exit(ask(*sys.argv[2:5]))
    elif cmd == "spoof":
        sys.exit(spoof(*sys.argv[2:5]))
