// Checks real management responses against the served OpenAPI document, so that the document
// cannot drift from what the routes answer.
import assert from 'node:assert/strict';
import { Ajv2020 } from 'ajv/dist/2020.js';

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: { 'application/json'?: { schema: object } } }> }>> };

export function conformanceChecker(doc: Doc) {
  const templates = Object.keys(doc.paths).map((template) => ({
    template,
    pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`),
  }));
  const seen = new Set<string>();
  return {
    /** Asserts that the status is documented for the route and the body matches its schema. */
    check(method: string, path: string, status: number, body: unknown): void {
      const bare = path.split('?')[0]!;
      // The most specific template: fewest parameters.
      const match = templates.filter((t) => t.pattern.test(bare)).sort((a, b) => a.template.split('{').length - b.template.split('{').length)[0];
      assert.ok(match, `no documented path for ${bare}`);
      const operation = doc.paths[match.template]![method.toLowerCase()];
      assert.ok(operation, `${method} ${match.template} is not documented`);
      const response = operation.responses[String(status)];
      assert.ok(response, `${method} ${match.template} does not document ${status}`);
      const schema = response.content?.['application/json']?.schema;
      assert.ok(schema, `${method} ${match.template} ${status} has no JSON schema`);
      const validate = new Ajv2020({ strict: false, allErrors: true }).compile(schema);
      assert.ok(validate(body), `${method} ${bare} ${status}: ${JSON.stringify(validate.errors)} in ${JSON.stringify(body).slice(0, 300)}`);
      seen.add(`${method.toLowerCase()} ${match.template}`);
    },
    /** Every documented operation (of those `mine` selects) that no check has exercised. */
    unexercised(mine: (operation: string) => boolean = () => true): string[] {
      return Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)).filter((op) => mine(op) && !seen.has(op));
    },
  };
}
