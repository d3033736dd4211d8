// A real OpenID Provider for tokengate's sign-in tests: npm's `oidc-provider` on
// 127.0.0.1 with one static confidential client. Its development interactions accept any
// login name (the password is ignored); the account's email is `<login>@example.com`,
// verified. Usage: node oidc/provider.mjs PORT REDIRECT_URI [CLIENT_ID] [CLIENT_SECRET]
// Prints `READY <issuer>` on stdout once listening.

import Provider from 'oidc-provider';

const [port, redirectUri, clientId = 'tokengate-test', clientSecret = 'tokengate-test-secret'] =
  process.argv.slice(2);
if (!port || !redirectUri) {
  console.error('usage: provider.mjs PORT REDIRECT_URI [CLIENT_ID] [CLIENT_SECRET]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, name: `Test ${id}` };
      },
    };
  },
});
provider.proxy = false;

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
