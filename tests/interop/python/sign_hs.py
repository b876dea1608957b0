"""Signs a token the way an application with HMAC secrets does, with PyJWT.

    python sign_hs.py SECRET CLAIMS_JSON [ALG]
"""
import json
import sys

import jwt

secret, claims = sys.argv[1], json.loads(sys.argv[2])
alg = sys.argv[3] if len(sys.argv) > 3 else "HS256"
print(jwt.encode(claims, secret, algorithm=alg))
