"""Writes fuzz/seeds/<target>/: the seed corpora, from signet's own test
vectors and outputs (the backend fixture's keyring and tokens, RFC 8037's
example, the README's configuration). Run from the repository root:
    python3 fuzz/make-seeds.py
"""
import base64
import hashlib
import hmac
import json
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
fixture = root / "tests/fixtures/backend-aws-lc-rs"
seeds = root / "fuzz/seeds"


def write(target, name, data):
    d = seeds / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


tokens = json.loads((fixture / "tokens.json").read_text())
for alg, token in tokens.items():
    write("token", f"signet-{alg}", token)
# RFC 8037 appendix A.4: an Ed25519 JWS (no kid: refused, for its header).
write("token", "rfc8037-a4", "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
# A legacy token as an application with HMAC secrets signs it.
head = b64(b'{"alg":"HS256","typ":"JWT"}')
claims = b64(b'{"sub":"user-1","exp":1900000000}')
mac = hmac.new(b"fuzz-secret", f"{head}.{claims}".encode(), hashlib.sha256).digest()
write("token", "legacy-hs256", f"{head}.{claims}.{b64(mac)}")

keyring = (fixture / "keys/access_token.json").read_bytes()
write("keyring", "fixture-access_token", keyring)
ring = json.loads(keyring)
write("jwks", "signet", json.dumps({"keys": [k["jwk"] for k in ring["keys"]]}))
write("jwks", "empty", '{"keys": []}')

readme = (root / "README.md").read_text()
block = re.search(r"## Configuration\n\n.*?```toml\n(.*?)```", readme, re.S).group(1)
write("config", "readme", block)
write("config", "empty", "")
write("config", "signer", '[signer]\nkind = "software"\n[purposes.magic_link]\nsigner = "software"\n')

write("admin_body", "sign", b"\x00" + json.dumps({"purpose": "access_token", "claims": {"sub": "u"}, "ttl": "5m"}).encode())
write("admin_body", "verify", b"\x01" + json.dumps({"purpose": "access_token", "token": tokens["EdDSA"]}).encode())
write("admin_body", "consume", b"\x02" + json.dumps({"purpose": "magic_link", "token": tokens["ES256"]}).encode())
write("admin_body", "revoke", b"\x03" + json.dumps({"purpose": "magic_link", "jti": "abcdef"}).encode())
