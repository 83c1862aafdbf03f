#!/usr/bin/env python3
"""Known answers for knocker's stealth SYN authenticator, version 2 (the module docs of
crates/knocker-wire/src/syn.rs), computed with Python's own hmac and hashlib, apart from the
Rust code under test: `python3 crates/knocker-wire/tests/syn_vectors.py` prints what
`known_answers` in syn_props.rs asserts.
"""
import hashlib
import hmac
import ipaddress


def octets16(addr):
    a = ipaddress.ip_address(addr)
    if a.version == 4:
        return b"\0" * 10 + b"\xff\xff" + a.packed
    return a.packed


def hint(key, step, j):
    msg = b"knocker syn hint v2" + step.to_bytes(8, "big") + bytes([j])
    return int.from_bytes(hmac.new(key, msg, hashlib.sha256).digest()[0:2], "big")


def marks(key, step, src, dst, dst_port, src_port, j):
    msg = (b"knocker syn v2" + step.to_bytes(8, "big") + octets16(src) + octets16(dst)
           + dst_port.to_bytes(2, "big") + src_port.to_bytes(2, "big") + bytes([j]))
    h = hmac.new(key, msg, hashlib.sha256).digest()
    v4 = ipaddress.ip_address(src).version == 4 and ipaddress.ip_address(dst).version == 4
    hv = hint(key, step, j)
    ident = hv if v4 else ((h[8] >> 4) << 16) | hv
    return {
        "seq": int.from_bytes(h[0:4], "big"),
        "tsval": int.from_bytes(h[4:8], "big"),
        "id": ident,
        "slot": h[8] & 0x0F,
    }


KEY = bytes(range(32))
STEP = 57_000_000
for j in range(4):
    print(f"hint(step {STEP}, j {j}) = {hint(KEY, STEP, j):#06x}")
for src, dst, j in [("192.0.2.1", "198.51.100.2", 1), ("2001:db8::1", "2001:db8::2", 3)]:
    m = marks(KEY, STEP, src, dst, 443, 40000, j)
    print(f"{src} -> {dst}:443 from 40000, j {j}: seq {m['seq']:#010x} tsval {m['tsval']:#010x} "
          f"id {m['id']:#x} slot {m['slot']}")
