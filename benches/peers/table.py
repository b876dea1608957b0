"""Prints benches/peers.sh's Markdown table from its measurements.

    python3 table.py WORKDIR CRITERION_DIR

WORKDIR holds peers.jsonl (jose, PyJWT, jwcrypto) and wrk.txt (the server
and nginx); CRITERION_DIR holds `cargo bench --bench peers`'s estimates.
"""

import datetime
import json
import os
import platform
import sys

work, criterion = sys.argv[1], sys.argv[2]
ALGS = ["EdDSA", "RS256", "ES256"]


def rate(group, name):
    """Operations per second from criterion's mean, or None."""
    path = os.path.join(criterion, group, name, "new", "estimates.json")
    try:
        ns = json.load(open(path))["mean"]["point_estimate"]
    except OSError:
        return None
    return 1e9 / ns


peers = {}
for line in open(os.path.join(work, "peers.jsonl")):
    r = json.loads(line)
    peers[(r["peer"], r["op"], r["alg"])] = r["ops"]
wrk = {}
for line in open(os.path.join(work, "wrk.txt")):
    name, rps, p99 = line.split()
    wrk[name] = (float(rps), float(p99))


def ops(v):
    return "-" if v is None else f"{v:,.0f}/s"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}×"


cpus = os.cpu_count()
model = next(
    (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
    platform.processor(),
)
print(f"Measured {datetime.date.today()} on {cpus} cores ({model}), one run of `benches/peers.sh`.")
print()
print("Signing, one thread (HTTP: `POST /v1/tokens` with wrk, 32 connections, the load generator sharing the cores):")
print()
print("| alg | aws-lc-rs floor | ring floor | signet | signet / floor | signet HTTP | jose | PyJWT | signet / jose | signet / PyJWT |")
print("|---|---|---|---|---|---|---|---|---|---|")
for alg in ALGS:
    floor = rate(alg, "aws-lc-rs sign")
    ours = rate(alg, "signet sign")
    jose = peers.get(("jose", "sign", alg))
    pyjwt = peers.get(("PyJWT", "sign", alg))
    http = wrk.get(f"sign-{alg}", (None, None))[0]
    print(
        f"| {alg} | {ops(floor)} | {ops(rate(alg, 'ring sign'))} | {ops(ours)} | {ratio(ours, floor)} | {ops(http)} "
        f"| {ops(jose)} | {ops(pyjwt)} | {ratio(ours, jose)} | {ratio(ours, pyjwt)} |"
    )
print()
print("Verification, one thread (kid lookup in a cached JWKS, signature, iss, aud, exp):")
print()
print("| alg | aws-lc-rs floor | ring floor | signet verifier | signet / floor | jose | PyJWT | jwcrypto | signet / jose | signet / PyJWT | signet / jwcrypto |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for alg in ALGS:
    floor = rate(alg, "aws-lc-rs verify")
    ours = rate(alg, "signet verifier")
    jose = peers.get(("jose", "verify", alg))
    pyjwt = peers.get(("PyJWT", "verify", alg))
    jwc = peers.get(("jwcrypto", "verify", alg))
    print(
        f"| {alg} | {ops(floor)} | {ops(rate(alg, 'ring verify'))} | {ops(ours)} | {ratio(ours, floor)} "
        f"| {ops(jose)} | {ops(pyjwt)} | {ops(jwc)} | {ratio(ours, jose)} | {ratio(ours, pyjwt)} | {ratio(ours, jwc)} |"
    )
print()
print("JWKS endpoint (wrk, 1 thread, 32 connections, the same bytes):")
print()
print("| | signet | nginx (static file) | signet / nginx |")
print("|---|---|---|---|")
for label, ours, theirs in [
    ("1 worker", "jwks-signet-1", "jwks-nginx-1"),
    (f"{cpus} workers (signet's default)", "jwks-signet", "jwks-nginx-auto"),
]:
    (s_rps, s_p99), (n_rps, n_p99) = wrk[ours], wrk[theirs]
    print(f"| {label}: throughput | {s_rps:,.0f} req/s | {n_rps:,.0f} req/s | {s_rps / n_rps:.2f}× |")
    print(f"| {label}: p99 latency | {s_p99:.2f} ms | {n_p99:.2f} ms | {s_p99 / n_p99:.2f}× |")

consume = rate("consume", "signet file store")
print()
print(
    f"Consuming a single-use token (verify, then an O_EXCL create and a directory fsync on the file store, "
    f"one thread, in-process): {ops(consume)}."
)
