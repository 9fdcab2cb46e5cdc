#!/usr/bin/python3
"""Raw Ethernet frames for the port-security tests, independent of nsfw: forged frames sent
on an interface with AF_PACKET, and a sniffer that counts the frames carrying a marker.

  frames.py send [--bypass] [--proto P] IFACE KIND MARKER ARG...
                                            send one forged frame three times, from a
                                            packet socket bound to protocol P (0: the kernel
                                            takes it from the frame; 0x88b5, say: the skb's
                                            protocol is not what the frame is), with
                                            PACKET_QDISC_BYPASS if --bypass; KIND:
      udp4  SRCMAC DSTMAC SRC DST            IPv4/UDP from SRC
      udp6  SRCMAC DSTMAC SRC DST            IPv6/UDP from SRC
      arp   SRCMAC DSTMAC OP SHA SPA THA TPA ARP (OP 1 request, 2 reply)
      na    SRCMAC DSTMAC SRC DST TARGET     ICMPv6 neighbour advertisement (override) for
                                             TARGET, its link-layer option SRCMAC
      ns    SRCMAC DSTMAC SRC DST TARGET     ICMPv6 neighbour solicitation for TARGET
      raw   SRCMAC DSTMAC ETHERTYPE          ethertype 0x88b5 (say) and the marker
      vlan  SRCMAC DSTMAC SRC DST            802.1Q (VLAN 5) tagged IPv4/UDP
      fragra SRCMAC DSTMAC SRC DST           a router advertisement in two IPv6 fragments,
                                             its ICMPv6 header in the second (the first
                                             holds a destination-options header and, past
                                             its end, a trailer byte 128: echo request).
                                             Only the first fragment carries MARKER
      fragna SRCMAC DSTMAC SRC DST TARGET    a neighbour advertisement for TARGET in two
                                             fragments, its ICMPv6 header in the first
  frames.py sendtap DEVICE KIND MARKER ARG...
                                            the same, written to a macvtap's /dev/tapN
  frames.py sniff IFACE SECONDS MARKER      print how many frames carrying MARKER arrived

Every frame carries MARKER after its payload (Ethernet trailer), which the receiver's IP
stack ignores and a sniffer sees.
"""
import os
import socket
import struct
import sys
import time

# The marker of the frames being sent, also in the UDP payloads: a router or NAT on the way
# drops the Ethernet trailer, not the payload.
MARK = b""
SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ip4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:] + payload


def udp4(src, dst):
    body = b"forged" + MARK
    u = struct.pack("!HHHH", 40000, 9, 8 + len(body), 0) + body
    return ip4(src, dst, 17, u)


def ip6(src, dst, nh, payload, hops=64):
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    return struct.pack("!IHBB", 0x60000000, len(payload), nh, hops) + s + d + payload


def l4sum6(src, dst, nh, body):
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    return checksum(s + d + struct.pack("!IxxxB", len(body), nh) + body)


def udp6(src, dst):
    body = b"forged" + MARK
    u = struct.pack("!HHHH", 40000, 9, 8 + len(body), 0) + body
    c = l4sum6(src, dst, 17, u)
    return ip6(src, dst, 17, u[:6] + struct.pack("!H", c) + u[8:])


def na(src, dst, target, lladdr):
    t = socket.inet_pton(socket.AF_INET6, target)
    # Router 0, solicited 0, override 1; target; option 2 (target link-layer address).
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + t + struct.pack("!BB", 2, 1) + lladdr + marked()
    c = l4sum6(src, dst, 58, body)
    return ip6(src, dst, 58, body[:2] + struct.pack("!H", c) + body[4:], hops=255)


def marked():
    """An ND option carrying the marker (type 253, experimental: receivers skip it), since a
    bridge handing frames to the IP hooks trims the Ethernet trailer."""
    n = (len(MARK) + 2 + 7) // 8
    return struct.pack("!BB", 253, n) + MARK.ljust(n * 8 - 2, b"\0")


def ns(src, dst, target, lladdr):
    t = socket.inet_pton(socket.AF_INET6, target)
    # Reserved; target; option 1 (source link-layer address).
    body = struct.pack("!BBHI", 135, 0, 0, 0) + t + struct.pack("!BB", 1, 1) + lladdr + marked()
    c = l4sum6(src, dst, 58, body)
    return ip6(src, dst, 58, body[:2] + struct.pack("!H", c) + body[4:], hops=255)


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, int(op), mac(sha),
                       socket.inet_aton(spa), mac(tha), socket.inet_aton(tpa))


def frag6(src, dst, head, body, marker):
    """Two IPv6 fragments of HEAD (the fragment header's next header) + BODY, split after 8
    bytes. The first carries `0x80 MARKER` as its Ethernet trailer (the sniffer counts first
    fragments: later ones pass by design); the second, no marker."""
    unfrag, ident = body, 0x1234ABCD
    f1 = struct.pack("!BBHI", head, 0, 1, ident) + unfrag[:8]
    f2 = struct.pack("!BBHI", head, 0, 1 << 3, ident) + unfrag[8:]
    return [ip6(src, dst, 44, f1, hops=255) + b"\x80" + marker, ip6(src, dst, 44, f2, hops=255)]


def fragnd(kind, marker, a):
    S = lambda x: socket.inet_pton(socket.AF_INET6, x)
    if kind == "fragra":
        body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
        body += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + S("2001:db8:bad::")
    else:
        body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + S(a[4])
        body += struct.pack("!BB", 2, 1) + mac(a[0])
    c = l4sum6(a[2], a[3], 58, body)
    body = body[:2] + struct.pack("!H", c) + body[4:]
    if kind == "fragra":
        # A destination-options header (PadN) first: the ICMPv6 header lands in fragment 2.
        head, body = 60, struct.pack("!BB6s", 58, 0, b"\x01\x04\0\0\0\0") + body
    else:
        head = 58
    eth = mac(a[1]) + mac(a[0]) + b"\x86\xdd"
    return [eth + f for f in frag6(a[2], a[3], head, body, marker)]


def frame(kind, marker, a):
    if kind in ("fragra", "fragna"):
        return fragnd(kind, marker, a)
    src, dst = mac(a[0]), mac(a[1])
    if kind == "udp4":
        return dst + src + b"\x08\x00" + udp4(a[2], a[3]) + marker
    if kind == "udp6":
        return dst + src + b"\x86\xdd" + udp6(a[2], a[3]) + marker
    if kind == "na":
        # A sixth argument: the link-layer address its option names (its own MAC if absent).
        ll = mac(a[5]) if len(a) > 5 else src
        return dst + src + b"\x86\xdd" + na(a[2], a[3], a[4], ll) + marker
    if kind == "ns":
        # A sixth argument: the link-layer address its option names (its own MAC if absent).
        ll = mac(a[5]) if len(a) > 5 else src
        return dst + src + b"\x86\xdd" + ns(a[2], a[3], a[4], ll) + marker
    if kind == "arp":
        body = arp(*a[2:7])
        return dst + src + b"\x08\x06" + body + b"\0" * 18 + marker
    if kind == "raw":
        return dst + src + struct.pack("!H", int(a[2], 0)) + b"\0" * 46 + marker
    if kind == "vlan":
        return dst + src + b"\x81\x00" + struct.pack("!H", 5) + b"\x08\x00" + udp4(a[2], a[3]) + marker
    raise SystemExit(f"unknown kind {kind}")


def send(iface, kind, marker, args, proto=0, bypass=False):
    global MARK
    MARK = marker.encode()
    f = frame(kind, marker.encode(), args)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    if bypass:
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    s.bind((iface, proto))
    for _ in range(3):
        for one in f if isinstance(f, list) else [f]:
            s.send(one)
        time.sleep(0.01)
    return 0


def sendtap(path, kind, marker, args):
    """The same frame written three times to a macvtap's character device, as a VM's
    virtio driver would (after the 10-byte virtio-net header macvtap expects by default)."""
    global MARK
    MARK = marker.encode()
    f = frame(kind, marker.encode(), args)
    fd = os.open(path, os.O_RDWR)
    for _ in range(3):
        os.write(fd, bytes(10) + f)
        time.sleep(0.01)
    return 0


def sniff(iface, seconds, marker):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((iface, 0))
    s.settimeout(0.1)
    print("ready", flush=True)
    end = time.time() + float(seconds)
    n = 0
    m = marker.encode()
    while time.time() < end:
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        # Frames this host sent itself (PACKET_OUTGOING) are not arrivals.
        if addr[2] != socket.PACKET_OUTGOING and m in data:
            n += 1
    print(n, flush=True)
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "send":
        a, proto, bypass = sys.argv[2:], 0, False
        if a[0] == "--bypass":
            bypass, a = True, a[1:]
        if a[0] == "--proto":
            proto, a = int(a[1], 0), a[2:]
        sys.exit(send(a[0], a[1], a[2], a[3:], proto, bypass))
    elif cmd == "sendtap":
        a = sys.argv[2:]
        sys.exit(sendtap(a[0], a[1], a[2], a[3:]))
    elif cmd == "sniff":
        sys.exit(sniff(*sys.argv[2:5]))
    raise SystemExit(__doc__)
