"""A software passkey authenticator for the API tests, standing in for the user's device.

It is not tollgate's code: keys, signatures and encodings come from the `cryptography` package
and python-fido2's CBOR, as a phone or security key would make them. It reads one JSON request on
stdin and writes one JSON answer:

  {"op": "create" | "get", "options": <publicKey options JSON from tollgate>,
   "origin": "http://localhost:PORT", "state": <this authenticator's state, or null>,
   "uv": true, "rp_id": <override>, "counter": <override>,
   "id_len": <credential id bytes, 32>, "cose_alg": <the key's declared algorithm, -7>,
   "y_zero": <a point off the curve>}

and answers {"state": <the new state>, "credential": <credential.toJSON()>}.
"""

import base64
import hashlib
import json
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor

UP, UV, AT = 0x01, 0x04, 0x40


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def client_data(kind, options, origin):
    return json.dumps(
        {"type": kind, "challenge": options["challenge"], "origin": origin, "crossOrigin": False}
    ).encode()


def create(req):
    options = req["options"]
    if {"type": "public-key", "alg": -7} not in [
        {"type": p["type"], "alg": p["alg"]} for p in options["pubKeyCredParams"]
    ]:
        raise SystemExit("ES256 not offered")
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    cose = cbor.encode(
        {
            1: 2,
            3: req.get("cose_alg", -7),
            -1: 1,
            -2: numbers.x.to_bytes(32, "big"),
            -3: bytes(32) if req.get("y_zero") else numbers.y.to_bytes(32, "big"),
        }
    )
    credential_id = os.urandom(req.get("id_len", 32))
    rp_id = req.get("rp_id") or options["rp"]["id"]
    flags = UP | AT | (UV if req.get("uv", True) else 0)
    auth_data = (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags])
        + struct.pack(">I", 0)
        + bytes(16)
        + struct.pack(">H", len(credential_id))
        + credential_id
        + cose
    )
    attestation = cbor.encode({"fmt": "none", "attStmt": {}, "authData": auth_data})
    state = {
        "credential_id": b64(credential_id),
        "key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "rp_id": rp_id,
        "user_handle": options["user"]["id"],
        "sign_count": 0,
    }
    credential = {
        "id": b64(credential_id),
        "rawId": b64(credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(client_data("webauthn.create", options, req["origin"])),
            "attestationObject": b64(attestation),
            "transports": ["internal"],
        },
        "clientExtensionResults": {},
        "authenticatorAttachment": "platform",
    }
    return state, credential


def get(req):
    options, state = req["options"], dict(req["state"])
    allowed = [c["id"] for c in options.get("allowCredentials", [])]
    if allowed and state["credential_id"] not in allowed:
        raise SystemExit("this authenticator holds none of the allowed credentials")
    state["sign_count"] = req.get("counter", state["sign_count"] + 1)
    rp_id = req.get("rp_id") or state["rp_id"]
    flags = UP | (UV if req.get("uv", True) else 0)
    auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags])
    auth_data += struct.pack(">I", state["sign_count"])
    data = client_data("webauthn.get", options, req["origin"])
    key = serialization.load_pem_private_key(state["key"].encode(), None)
    signature = key.sign(auth_data + hashlib.sha256(data).digest(), ec.ECDSA(hashes.SHA256()))
    credential = {
        "id": state["credential_id"],
        "rawId": state["credential_id"],
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(data),
            "authenticatorData": b64(auth_data),
            "signature": b64(signature),
            "userHandle": state["user_handle"],
        },
        "clientExtensionResults": {},
        "authenticatorAttachment": "platform",
    }
    return state, credential


def main():
    req = json.load(sys.stdin)
    state, credential = {"create": create, "get": get}[req["op"]](req)
    json.dump({"state": state, "credential": credential}, sys.stdout)


if __name__ == "__main__":
    main()
