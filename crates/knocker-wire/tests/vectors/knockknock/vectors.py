#!/usr/bin/env python3
"""Known-answer vectors for knockknock's knock, made the way knockknock makes them.

This follows knockknock's own code line by line (moxie0/knockknock, knockknock/CryptoEngine.py,
knockknock.py, knockknock/LogEntry.py), ported from Python 2 to Python 3, with the `cryptography`
package's AES in place of PyCrypto's (the same AES-128-ECB): it shares no code with knocker's Rust
implementation, which the test `knockknock_vectors.rs` compares against what this prints.

Usage: vectors.py CASES... where each case is CIPHER_HEX:MAC_HEX:COUNTER:PORT. For each, one line:
    CIPHER_HEX MAC_HEX COUNTER PORT ID SEQ ACK WINDOW
the four header fields as knockknock.py passes them to hping3 (-N ID -M SEQ -L ACK -w WINDOW).
"""
import hashlib
import hmac
import sys
from struct import pack, unpack

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class CryptoEngine:
    """CryptoEngine.py's encrypt path, without the profile's file handling."""

    def __init__(self, cipher_key, mac_key, counter):
        self.counter = counter
        self.mac_key = mac_key
        self.cipher = Cipher(algorithms.AES(cipher_key), modes.ECB())

    def calculate_mac(self, port):
        return hmac.new(self.mac_key, port, hashlib.sha1).digest()[:10]

    def encrypt_counter(self, counter):
        enc = self.cipher.encryptor()
        return enc.update(pack('!IIII', 0, 0, 0, counter)) + enc.finalize()

    def encrypt(self, plaintext):
        plaintext += self.calculate_mac(plaintext)
        counter_crypt = self.encrypt_counter(self.counter)
        self.counter = self.counter + 1
        return bytes(p ^ c for p, c in zip(plaintext, counter_crypt[:len(plaintext)]))


def main(cases):
    for case in cases:
        cipher_hex, mac_hex, counter, port = case.split(':')
        engine = CryptoEngine(bytes.fromhex(cipher_hex), bytes.fromhex(mac_hex), int(counter))
        # knockknock.py: port = pack('!H', int(port)); packetData = profile.encrypt(port)
        packet_data = engine.encrypt(pack('!H', int(port)))
        (id_field, seq_field, ack_field, win_field) = unpack('!HIIH', packet_data)
        # LogEntry.py on the server packs them back the same way
        assert pack('!HIIH', id_field, seq_field, ack_field, win_field) == packet_data
        print(cipher_hex, mac_hex, counter, port, id_field, seq_field, ack_field, win_field)


if __name__ == '__main__':
    main(sys.argv[1:])
