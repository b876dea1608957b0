// Signing and verification throughput of panva's jose, for benches/peers.sh.
//
//   node bench.mjs INPUT.json
//
// INPUT holds signet's JWKS, a token per algorithm, the issuer, the audience
// and the seconds to spend per measurement. Verification does what signet's
// verifier does: kid lookup in a local JWKS (createLocalJWKSet), signature,
// iss, aud and exp. Signing uses a key of the same kind generated here, parsed
// once (a KeyObject), with the same claims. Prints one JSON line per figure.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, generateKeyPair, jwtVerify, SignJWT } from 'jose';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const seconds = input.seconds ?? 2;

async function rate(op) {
  // Warm up, then count whole operations for `seconds`.
  const warm = performance.now() + 200;
  while (performance.now() < warm) await op();
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 16; i++) await op();
    n += 16;
  }
  return n / ((performance.now() - start) / 1000);
}

const jwks = createLocalJWKSet(input.jwks);
for (const [alg, token] of Object.entries(input.tokens)) {
  const verify = () =>
    jwtVerify(token, jwks, { issuer: input.issuer, audience: input.audience, algorithms: [alg] });
  await verify(); // fails loudly if jose refuses the token
  console.log(JSON.stringify({ peer: 'jose', op: 'verify', alg, ops: await rate(verify) }));

  const { privateKey } = await generateKeyPair(alg, { extractable: false });
  const claims = input.claims;
  const sign = () =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid: 'bench', typ: 'at+jwt' })
      .setIssuer(input.issuer)
      .setIssuedAt()
      .setExpirationTime('10m')
      .setJti(crypto.randomUUID())
      .sign(privateKey);
  console.log(JSON.stringify({ peer: 'jose', op: 'sign', alg, ops: await rate(sign) }));
}
