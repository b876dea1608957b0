"""Verifies one signet token with PyJWT or jwcrypto, as their docs show.

    verify.py --lib pyjwt|jwcrypto (--jwks URL | --discovery URL | --oidc URL)
              --purpose P [--issuer ISS] [--typ TYP] [--audience AUD] TOKEN

With --discovery, the JWKS URL, issuer and typ come from signet's
/.well-known/openid-configuration (its per-purpose entries). With --oidc, the
verifier knows nothing of signet: it takes the standard jwks_uri, issuer and
algorithms from discovery and checks no typ, as a generic OIDC client does.
Prints the claims as JSON, or exits 1.
"""

import argparse
import json
import sys
import urllib.request

ALGORITHMS = ["EdDSA", "RS256", "PS256", "ES256"]


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def with_pyjwt(a):
    import jwt

    # PyJWT does not check typ itself.
    typ = jwt.get_unverified_header(a.token).get("typ")
    if a.typ is not None and typ != a.typ:
        raise ValueError(f"typ {typ!r} is not {a.typ!r}")
    signing_key = jwt.PyJWKClient(a.jwks).get_signing_key_from_jwt(a.token)
    return jwt.decode(
        a.token,
        signing_key,
        algorithms=a.algorithms,
        audience=a.audience,
        issuer=a.issuer,
        options={"require": ["exp", "iss"]},
    )


def with_jwcrypto(a):
    from jwcrypto import jwk, jws, jwt

    keyset = jwk.JWKSet.from_json(json.dumps(fetch_json(a.jwks)))
    checks = {"iss": a.issuer, "exp": None}
    if a.audience:
        checks["aud"] = a.audience
    token = jwt.JWT(jwt=a.token, key=keyset, algs=a.algorithms, check_claims=checks, expected_type="JWS")
    header = json.loads(token.header)
    if a.typ is not None and header.get("typ") != a.typ:
        raise ValueError(f"typ {header.get('typ')!r} is not {a.typ!r}")
    return json.loads(token.claims)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lib", choices=["pyjwt", "jwcrypto"], required=True)
    p.add_argument("--jwks")
    p.add_argument("--discovery")
    p.add_argument("--oidc")
    p.add_argument("--purpose", required=True)
    p.add_argument("--issuer")
    p.add_argument("--typ")
    p.add_argument("--audience")
    p.add_argument("token")
    a = p.parse_args()
    a.algorithms = ALGORITHMS
    try:
        if a.oidc:
            doc = fetch_json(a.oidc)
            a.jwks = doc["jwks_uri"]
            a.issuer = doc["issuer"]
            a.algorithms = doc["id_token_signing_alg_values_supported"]
        if a.discovery:
            doc = fetch_json(a.discovery)
            purpose = doc.get("signet_purposes", {}).get(a.purpose)
            if purpose is None:
                raise ValueError(f"the discovery document has no purpose {a.purpose}")
            a.jwks = purpose["jwks_uri"]
            a.issuer = a.issuer or doc["issuer"]
            a.typ = a.typ or purpose["typ"]
        claims = with_pyjwt(a) if a.lib == "pyjwt" else with_jwcrypto(a)
    except Exception as e:  # every failure is a refusal, with its reason
        print(f"{a.lib} refused the token: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(claims))


if __name__ == "__main__":
    main()
