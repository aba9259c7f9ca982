// Authenticates with each installed keystone-client (0.3.0 and 0.3.1),
// unchanged, against SR_AUTH_URL (…/v2.0) as SR_USER / SR_KEY, and prints
// one JSON line per version: the tenant id, token and expiry that
// getTenantIdAndToken gives (what service-registry-client builds its URLs
// from), and the expiry as Date.parse reads it. Exit 1 on an error.
'use strict';

const versions = ['0.3.0', '0.3.1'];
let left = versions.length;

for (const v of versions) {
  const KeystoneClient = require('keystone-client-' + v).KeystoneClient;
  const ks = new KeystoneClient(process.env.SR_AUTH_URL, {username: process.env.SR_USER, apiKey: process.env.SR_KEY});
  ks.getTenantIdAndToken({}, (err, r) => {
    if (err) {
      process.stdout.write(JSON.stringify({version: v, error: String(err.message || err)}) + '\n');
      process.exit(1);
    }
    const tenantId = r.tenantId === undefined ? null : r.tenantId;
    process.stdout.write(JSON.stringify({version: v, tenantId: tenantId, token: r.token, expires: r.expires, expiresMs: Date.parse(r.expires) || null}) + '\n');
    if (--left === 0) {
      process.exit(0);
    }
  });
}
