// How many SQL statements the hot paths send to PostgreSQL, counted on the wire between the
// server and the database (test/support/statement-counter.ts). DESIGN.md §5: on these
// machines every round trip costs a system call that dominates the profile, so the number of
// statements per request is the figure to keep down. Counted once the client is cached (its
// first request reads it), each path a few times, the smallest count kept: a statement of
// some background job landing in the window must not decide the figure.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { startStatementCounter, type StatementCounter } from '../support/statement-counter.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { postForm } from '../support/http.ts';

describe('statements per request', () => {
  let database: TestDatabase;
  let counter: StatementCounter;
  let server: TestServer;
  let opaque: TestClient;
  let jwt: TestClient;
  let app: TestClient;
  let gateway: TestClient;
  let user: TestUser;

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    counter = await startStatementCounter(target.hostname, Number(target.port));
    const url = new URL(database.url);
    url.hostname = '127.0.0.1';
    url.port = String(counter.port);
    server = await startTestServer(url.href);
    opaque = await makeClient(database.db);
    jwt = await makeClient(database.db, { tokenFormat: 'jwt' });
    app = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'] });
    gateway = await makeClient(database.db, { introspectAny: true });
    // Cheap argon2 parameters: this test counts statements, not hashing work.
    user = await makeUser(database.db, 'statements-user', { params: { memoryCost: 1024, timeCost: 1, parallelism: 1 } });
  });

  after(async () => {
    await server?.stop();
    await counter?.close();
    await database?.drop();
  });

  /** The fewest statements one call of `request` sent, over five calls. */
  async function fewestStatements(request: () => Promise<void>): Promise<{ fewest: number; texts: string[] }> {
    await request(); // loads and caches the client
    let fewest = Infinity;
    let texts: string[] = [];
    for (let i = 0; i < 5; i++) {
      counter.reset();
      await request();
      if (counter.count() < fewest) {
        fewest = counter.count();
        texts = counter.texts();
      }
    }
    return { fewest, texts };
  }

  const clientCredentials = (client: TestClient) => async () => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: client.basic });
    assert.equal(res.status, 200, res.text);
  };

  it('client credentials, opaque: one statement (the token row)', async () => {
    const { fewest, texts } = await fewestStatements(clientCredentials(opaque));
    assert.equal(fewest, 1, texts.join('\n'));
  });

  it('client credentials, JWT: one statement (the token record)', async () => {
    const { fewest, texts } = await fewestStatements(clientCredentials(jwt));
    assert.equal(fewest, 1, texts.join('\n'));
  });

  it('introspection of a token this instance issued: at most one statement', async () => {
    const issued = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: opaque.basic });
    const token = issued.json.access_token as string;
    const { fewest, texts } = await fewestStatements(async () => {
      const res = await postForm(`${server.url}/introspect`, { token }, { basic: gateway.basic });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.active, true);
    });
    assert.ok(fewest <= 1, `${fewest} statements:\n${texts.join('\n')}`);
  });

  it('refresh with rotation: two statements (read the token with its grant, user and roles; rotate and write the access token)', async () => {
    const login = await postForm(`${server.url}/token`, {
      grant_type: 'password', username: user.username, password: user.password, scope: 'read',
    }, { basic: app.basic });
    assert.equal(login.status, 200, login.text);
    let refreshToken = login.json.refresh_token as string;
    const { fewest, texts } = await fewestStatements(async () => {
      const res = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: app.basic });
      assert.equal(res.status, 200, res.text);
      refreshToken = res.json.refresh_token as string;
    });
    assert.equal(fewest, 2, texts.join('\n'));
  });

  it('a column type changed under the prepared statements (an admin ALTER TABLE) costs no request', async () => {
    const login = await postForm(`${server.url}/token`, {
      grant_type: 'password', username: user.username, password: user.password, scope: 'read',
    }, { basic: app.basic });
    let refreshToken = login.json.refresh_token as string;
    const refreshAll = async (times: number) => {
      for (let i = 0; i < times; i++) {
        const res = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: app.basic });
        assert.equal(res.status, 200, res.text);
        refreshToken = res.json.refresh_token as string;
      }
    };
    // Prepared on every pooled connection (4 in tests), then the type of a column they return changes.
    await Promise.all([refreshAll(1), ...[1, 2, 3].map(() => postForm(`${server.url}/token`, {
      grant_type: 'password', username: user.username, password: user.password, scope: 'read',
    }, { basic: app.basic }))]);
    await refreshAll(8);
    await sql`alter table users alter column username type varchar(300)`.execute(database.db);
    await refreshAll(8);
    await sql`alter table users alter column username type text`.execute(database.db);
    await refreshAll(8);
  });
});
