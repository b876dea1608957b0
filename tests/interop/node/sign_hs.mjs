// Signs a token the way an application with HMAC secrets in .env does,
// with panva's jose: SignJWT with HS256 (or the alg given), no kid.
//
//   node sign_hs.mjs SECRET CLAIMS_JSON [ALG]
import { SignJWT } from 'jose';

const [secret, claims, alg = 'HS256'] = process.argv.slice(2);
const token = await new SignJWT(JSON.parse(claims))
  .setProtectedHeader({ alg, typ: 'JWT' })
  .sign(new TextEncoder().encode(secret));
console.log(token);
