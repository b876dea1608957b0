// Runs SignetAuthGuard (signet-guard.mjs) on one request, as NestJS would:
//   node guard_check.mjs ISSUER ADMIN_URL VERIFIER_TOKEN TOKEN
// Prints {"allowed":true,"user":{...}} or {"allowed":false,"status":401,"message":...}.
import { SignetAuthGuard } from './signet-guard.mjs';

const [issuer, adminUrl, verifierToken, token] = process.argv.slice(2);
const guard = new SignetAuthGuard({ issuer, adminUrl, verifierToken, audience: 'api' });
const request = { headers: { authorization: `Bearer ${token}` } };
const context = { switchToHttp: () => ({ getRequest: () => request }) };
try {
  await guard.canActivate(context);
  console.log(JSON.stringify({ allowed: true, user: request.user }));
} catch (e) {
  if (e.status !== 401) throw e;
  console.log(JSON.stringify({ allowed: false, status: e.status, message: e.message }));
}
