#!/usr/bin/env python3
"""Check a patient's audit download from the portal, independently of the portal's code.

Usage: verify_audit_download.py DOWNLOAD.json [--log-key VERIFIER_KEY]

The download (format "audit-proof-download/v1") holds the patient's audit events, an RFC 9162
inclusion proof for each, the C2SP signed checkpoint the proofs lead to, the log's verifier key
and the keys of the witnesses that cosigned the checkpoint. Pass --log-key with the key the
portal publishes elsewhere, so that a download cannot bring its own key.

Needs only hashlib and the `cryptography` package (pip install cryptography) for Ed25519.
Prints "OK: ..." and exits 0 when everything checks, else "FAIL: ..." and exits 1.
"""

import argparse
import base64
import binascii
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "audit-proof-download/v1"
EM_DASH = "\u2014"
TYPE_ED25519 = 0x01
TYPE_COSIGNATURE_V1 = 0x04


class Invalid(Exception):
    """The download does not check; the message says where."""


def b64(text):
    """Standard base64 in its one canonical spelling (padding, and unused bits zero)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as err:
        raise Invalid(f"invalid base64 {text!r}") from err
    if base64.b64encode(raw).decode() != text:
        raise Invalid(f"non-canonical base64 {text!r}")
    return raw


def sha256(data):
    return hashlib.sha256(data).digest()


# --- RFC 9162 section 2.1 -------------------------------------------------------------------


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2, step by step."""
    if index >= size:
        raise Invalid(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Invalid("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Invalid("the inclusion proof is too short")
    if r != root:
        raise Invalid("the inclusion proof does not lead to the checkpoint's root")


# --- C2SP signed note, checkpoint and cosignature -------------------------------------------


def check_name(name):
    if not name or "+" in name or any(c.isspace() for c in name):
        raise Invalid(f"bad key name {name!r}")


def key_id(name, key_type, public):
    return sha256(name.encode() + b"\n" + bytes([key_type]) + public)[:4]


def parse_verifier_key(text, expected_type):
    """<name>+<hex key id>+<base64(type || 32-byte Ed25519 key)>"""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise Invalid("a verifier key is name+id+key")
    name, hex_id, material = parts
    check_name(name)
    if len(hex_id) != 8:
        raise Invalid("the key id is not 8 hex digits")
    material = b64(material)
    if len(material) != 33 or material[0] != expected_type:
        raise Invalid(f"key {name} is not of signature type {expected_type:#04x}")
    public = material[1:]
    try:
        declared = bytes.fromhex(hex_id)
    except ValueError as err:
        raise Invalid("the key id is not hex") from err
    if key_id(name, expected_type, public) != declared:
        raise Invalid(f"key {name}: the key id does not match name and key")
    try:
        key = Ed25519PublicKey.from_public_bytes(public)
    except ValueError as err:
        raise Invalid(f"key {name} is not an Ed25519 key") from err
    return {"name": name, "id": declared, "type": expected_type, "public": public, "key": key}


def split_note(note):
    """The note's text (ending in a newline) and its signatures as (name, key id, bytes)."""
    split = note.rfind("\n\n")
    if split < 0:
        raise Invalid("the note has no blank line before its signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    if any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) < 0xA0 for c in text):
        raise Invalid("the note text holds a control character")
    if not sigs or not sigs.endswith("\n"):
        raise Invalid("the signatures do not end with a newline")
    signatures = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise Invalid("a signature line does not start with an em dash")
        name, sep, encoded = line[2:].partition(" ")
        check_name(name)
        raw = b64(encoded)
        if not sep or len(raw) < 5:
            raise Invalid("malformed signature line")
        signatures.append((name, raw[:4], raw[4:]))
    if len(signatures) > 100:
        raise Invalid("too many signatures")
    return text, signatures


def verify_signatures(text, signatures, key):
    """Checks every signature line claiming `key`; returns the cosignature time or None."""
    mine = [s for (name, kid, s) in signatures if name == key["name"] and kid == key["id"]]
    if not mine:
        raise Invalid(f"the checkpoint carries no signature by {key['name']}")
    times = []
    for sig in mine:
        message, timestamp = text.encode(), None
        if key["type"] == TYPE_COSIGNATURE_V1:
            if len(sig) < 8:
                raise Invalid(f"the signature of {key['name']} does not verify")
            timestamp = int.from_bytes(sig[:8], "big")
            if timestamp > 2**63 - 1:
                raise Invalid(f"the signature of {key['name']} does not verify")
            message = f"cosignature/v1\ntime {timestamp}\n".encode() + message
            sig = sig[8:]
        if len(sig) != 64:
            raise Invalid(f"the signature of {key['name']} does not verify")
        try:
            key["key"].verify(sig, message)
        except InvalidSignature as err:
            raise Invalid(f"the signature of {key['name']} does not verify") from err
        times.append(timestamp)
    return times[0]


def parse_checkpoint(text):
    """origin, decimal size without leading zeros, base64 of a 32-byte root, extension lines."""
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise Invalid("the checkpoint has fewer than three lines")
    origin, size, root = lines[:3]
    if not origin or any(line == "" for line in lines[3:]):
        raise Invalid("the checkpoint has an empty line")
    if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")):
        raise Invalid("the checkpoint size is not a plain decimal")
    size = int(size)
    if size >= 2**64:
        raise Invalid("the checkpoint size does not fit 64 bits")
    root = b64(root)
    if len(root) != 32:
        raise Invalid("the checkpoint root is not 32 bytes")
    return origin, size, root


# --- the download ---------------------------------------------------------------------------


def verify_download(download, pinned_log_key=None):
    if not isinstance(download, dict) or download.get("format") != FORMAT:
        raise Invalid(f"not a {FORMAT} download")
    allowed = {"format", "log_key", "witness_keys", "checkpoint", "events"}
    if set(download) - allowed:
        raise Invalid(f"unknown fields {sorted(set(download) - allowed)}")
    log_key = parse_verifier_key(download["log_key"], TYPE_ED25519)
    if pinned_log_key is not None:
        pinned = parse_verifier_key(pinned_log_key, TYPE_ED25519)
        if (pinned["name"], pinned["public"]) != (log_key["name"], log_key["public"]):
            raise Invalid("the download's log key is not the published one")
    text, signatures = split_note(download["checkpoint"])
    origin, size, root = parse_checkpoint(text)
    if origin != log_key["name"]:
        raise Invalid(f"the checkpoint's origin {origin!r} is not the log key's name")
    verify_signatures(text, signatures, log_key)
    witnesses = []
    for witness_text in download.get("witness_keys", []):
        witness = parse_verifier_key(witness_text, TYPE_COSIGNATURE_V1)
        witnesses.append((witness["name"], verify_signatures(text, signatures, witness)))
    for position, event in enumerate(download["events"]):
        if not isinstance(event, dict) or set(event) != {"leaf_index", "entry", "inclusion_proof"}:
            raise Invalid(f"event {position}: expected leaf_index, entry and inclusion_proof")
        index = event["leaf_index"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2**64:
            raise Invalid(f"event {position}: bad leaf index")
        proof = [b64(h) for h in event["inclusion_proof"]]
        if any(len(h) != 32 for h in proof):
            raise Invalid(f"event {position}: a proof hash is not 32 bytes")
        try:
            verify_inclusion(leaf_hash(b64(event["entry"])), index, size, proof, root)
        except Invalid as err:
            raise Invalid(f"event {position} (leaf {index}): {err}") from err
    return origin, size, root, witnesses, len(download["events"])


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("download", help="the JSON file downloaded from the portal")
    parser.add_argument("--log-key", help="the log's verifier key as the portal publishes it")
    args = parser.parse_args(argv)
    try:
        with open(args.download, encoding="utf-8") as file:
            download = json.load(file)
        origin, size, root, witnesses, events = verify_download(download, args.log_key)
    except Invalid as err:
        print(f"FAIL: {err}")
        return 1
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"FAIL: unreadable download: {err!r}")
        return 1
    seen = ", ".join(f"{name} at {time}" for name, time in witnesses) or "no witness"
    print(
        f"OK: {events} events are in the log {origin} of {size} events, root "
        f"{base64.b64encode(root).decode()}; cosigned by {seen}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
