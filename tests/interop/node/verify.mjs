// Verifies one signet token with panva's jose, the way its documentation
// tells a Node service to: createRemoteJWKSet + jwtVerify.
//
//   node verify.mjs (--jwks URL | --discovery URL | --oidc URL) --purpose P [--issuer ISS] [--typ TYP] [--audience AUD] TOKEN
//
// With --discovery, the JWKS URL, issuer and typ come from signet's
// /.well-known/openid-configuration (its per-purpose entries). With --oidc,
// the verifier knows nothing of signet: it takes the standard jwks_uri,
// issuer and algorithms from discovery and checks no typ, as a generic OIDC
// client does. Prints the claims as JSON, or exits 1.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const token = args[args.length - 1];
const purpose = opt('purpose');
let jwksUrl = opt('jwks');
let issuer = opt('issuer');
let typ = opt('typ');
const audience = opt('audience');
let algorithms = ['EdDSA', 'RS256', 'PS256', 'ES256'];

try {
  const discovery = opt('discovery');
  if (discovery) {
    const doc = await (await fetch(discovery)).json();
    const p = doc.signet_purposes?.[purpose];
    if (!p) throw new Error(`the discovery document has no purpose ${purpose}`);
    jwksUrl = p.jwks_uri;
    issuer ??= doc.issuer;
    typ ??= p.typ;
  }
  const oidc = opt('oidc');
  if (oidc) {
    const doc = await (await fetch(oidc)).json();
    jwksUrl = doc.jwks_uri;
    issuer = doc.issuer;
    algorithms = doc.id_token_signing_alg_values_supported;
  }
  const JWKS = createRemoteJWKSet(new URL(jwksUrl));
  const { payload } = await jwtVerify(token, JWKS, { issuer, audience, typ, algorithms });
  console.log(JSON.stringify(payload));
} catch (e) {
  console.error(`jose refused the token: ${e.code ?? ''} ${e.message}`);
  process.exit(1);
}
