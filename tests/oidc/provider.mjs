// An OpenID Connect provider for the tests (panva/oidc-provider, certified by the
// OpenID Foundation): authorization code with PKCE required, discovery, userinfo,
// end-session. Users sign in on its development login form (any password); their
// groups come in the "groups" claim, as a Keycloak or Authing mapper would send them.
//
//   node provider.mjs PORT REDIRECT_URI [ID_TOKEN_TTL_SECONDS]
import Provider from 'oidc-provider';

const [port, redirectUri, ttl = '600'] = process.argv.slice(2);
const groups = { wangwu: ['招商科'], zhangsan: ['信息中心'], zhaoliu: [] };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'policy-rag',
    client_secret: 'test-secret',
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [new URL('/auth/signed-out', redirectUri).href],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'groups'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, groups: groups[id] ?? [] };
      },
    };
  },
  ttl: { IdToken: Number(ttl), AccessToken: Number(ttl) },
  cookies: { keys: ['only-for-tests'] },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`oidc provider on ${port}`));
