"""Signing and verification throughput of PyJWT and jwcrypto, for benches/peers.sh.

    python bench.py INPUT.json

INPUT holds signet's JWKS, a token per algorithm, the issuer, the audience and
the seconds to spend per measurement. Verification does what signet's
verifier does: kid lookup in a local JWKS, signature, iss, aud and exp. PyJWT
signs with a key of the same kind generated here, parsed once. Prints one
JSON line per figure.
"""

import json
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt

spec = json.load(open(sys.argv[1]))
seconds = spec.get("seconds", 2)


def rate(op):
    warm = time.perf_counter() + 0.2
    while time.perf_counter() < warm:
        op()
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(16):
            op()
        n += 16
    return n / (time.perf_counter() - start)


def emit(peer, op, alg, ops):
    print(json.dumps({"peer": peer, "op": op, "alg": alg, "ops": ops}), flush=True)


pyjwt_keys = jwt.PyJWKSet.from_dict(spec["jwks"])
jc_keys = jc_jwk.JWKSet.from_json(json.dumps(spec["jwks"]))
private = {
    "EdDSA": lambda: ed25519.Ed25519PrivateKey.generate(),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}

for alg, token in spec["tokens"].items():

    def pyjwt_verify():
        kid = jwt.get_unverified_header(token)["kid"]
        return jwt.decode(
            token,
            pyjwt_keys[kid],
            algorithms=[alg],
            issuer=spec["issuer"],
            audience=spec["audience"],
            options={"require": ["exp", "iss"]},
        )

    pyjwt_verify()
    emit("PyJWT", "verify", alg, rate(pyjwt_verify))

    def jwcrypto_verify():
        return jc_jwt.JWT(
            jwt=token,
            key=jc_keys,
            algs=[alg],
            check_claims={"iss": spec["issuer"], "aud": spec["audience"], "exp": None},
        )

    jwcrypto_verify()
    emit("jwcrypto", "verify", alg, rate(jwcrypto_verify))

    key = private[alg]()

    def pyjwt_sign():
        now = int(time.time())
        claims = dict(spec["claims"], iss=spec["issuer"], iat=now, exp=now + 600, jti=uuid.uuid4().hex)
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": "bench", "typ": "at+jwt"})

    pyjwt_sign()
    emit("PyJWT", "sign", alg, rate(pyjwt_sign))
