// A NestJS guard for an application moving from HMAC secrets to signet: the
// code of the README's "Moving from HMAC secrets", as it is there. It
// replaces the guard that tried the current secret, then the previous one:
//   - a token with a kid is signet's: verified here, with jose, against the
//     purpose's JWKS (fetched once, cached, refetched for an unknown kid);
//   - a token without a kid was signed with an old secret: signet checks it
//     against the secrets imported with `signet keys import-hmac`
//     (POST /v1/verify), until they expire.
// tests/legacy.rs runs it (guard_check.mjs) against a server.
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

export class SignetAuthGuard {   // in NestJS: @Injectable(), implements CanActivate
  constructor({ issuer, adminUrl, verifierToken, purpose = 'access_token', audience, typ = 'at+jwt',
    unauthorized = (message) => Object.assign(new Error(message), { status: 401 }) }) {
    Object.assign(this, { issuer, adminUrl, verifierToken, purpose, audience, typ, unauthorized });
    this.jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks/${purpose}.json`));
  }

  async canActivate(context) {
    const request = context.switchToHttp().getRequest();
    const [scheme, token] = (request.headers.authorization ?? '').split(' ');
    if (scheme !== 'Bearer' || !token) throw this.unauthorized('a Bearer token is required');
    request.user = await this.verify(token);
    return true;
  }

  async verify(token) {
    let header;
    try { header = decodeProtectedHeader(token); } catch { throw this.unauthorized('malformed token'); }
    if (header.kid) {   // signet's: verified here, keys cached from the JWKS
      try {
        const { payload } = await jwtVerify(token, this.jwks, { issuer: this.issuer,
          audience: this.audience, typ: this.typ, algorithms: ['EdDSA', 'RS256', 'PS256', 'ES256'] });
        return payload;
      } catch (e) { throw this.unauthorized(`invalid token: ${e.code ?? e.message}`); }
    }
    // No kid: signed with an old secret, which only signet holds now.
    const answer = await fetch(`${this.adminUrl}/v1/verify`, { method: 'POST',
      headers: { authorization: `Bearer ${this.verifierToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ purpose: this.purpose, token }) });
    if (answer.status === 401) throw this.unauthorized(`invalid legacy token: ${(await answer.json()).detail}`);
    if (!answer.ok) throw new Error(`signet answered ${answer.status}`);
    return (await answer.json()).claims;
  }
}
