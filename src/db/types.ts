// Table types for Kysely. db/README.md describes the same tables for people.
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export interface ClientsTable {
  client_id: string;
  name: string;
  secret_sha256: string | null;
  secret_created_at: NullableTimestamp;
  token_endpoint_auth_method: string;
  grant_types: string[];
  redirect_uris: ColumnType<string[], string[] | undefined, string[]>;
  scope: ColumnType<string, string | undefined, string>;
  access_token_format: ColumnType<'opaque' | 'jwt', 'opaque' | 'jwt' | undefined, 'opaque' | 'jwt'>;
  introspect_any: ColumnType<boolean, boolean | undefined, boolean>;
  /** A gateway limited to tokens of these audiences; null: any (0010). */
  introspect_audiences: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
  tls_client_auth_subject_dn: string | null;
  tls_client_auth_san_dns: string | null;
  disabled: ColumnType<boolean, boolean | undefined, boolean>;
  application_type: ColumnType<'web' | 'native', 'web' | 'native' | undefined, 'web' | 'native'>;
  first_party: ColumnType<boolean, boolean | undefined, boolean>;
  /** Set by a trigger whenever `disabled` changes: rows written before it no longer count (0005). */
  tokens_valid_after: ColumnType<Date | null, never, never>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface TokensTable {
  id_sha256: string;
  kind: string;
  format: ColumnType<'opaque' | 'jwt', 'opaque' | 'jwt' | undefined, 'opaque' | 'jwt'>;
  client_id: string | null;
  account_id: string | null;
  grant_id: string | null;
  uid: string | null;
  scope: string | null;
  issued_at: Timestamp;
  expires_at: NullableTimestamp;
  consumed_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  payload: ColumnType<Record<string, unknown>, string, string>;
}

export interface ClientCertificatesTable {
  id: Generated<string>;
  client_id: string;
  alias: string;
  pem: string;
  thumbprint_sha256: string;
  subject_dn: string;
  issuer_dn: string;
  san_dns: ColumnType<string[], string[] | undefined, string[]>;
  san_uri: ColumnType<string[], string[] | undefined, string[]>;
  san_ip: ColumnType<string[], string[] | undefined, string[]>;
  san_email: ColumnType<string[], string[] | undefined, string[]>;
  not_before: Timestamp;
  not_after: Timestamp;
  tier: string | null;
  created_at: Timestamp;
  removed_at: NullableTimestamp;
}

export interface SchemaMigrationsTable {
  version: string;
  name: string;
  checksum: string;
  applied_at: Timestamp;
}

export interface Database {
  clients: ClientsTable;
  tokens: TokensTable;
  client_certificates: ClientCertificatesTable;
  schema_migrations: SchemaMigrationsTable;
  users: UsersTable;
  roles: RolesTable;
  user_roles: UserRolesTable;
  scopes: ScopesTable;
  scope_roles: ScopeRolesTable;
  login_failures: LoginFailuresTable;
  consents: ConsentsTable;
  saml_identity_providers: SamlIdentityProvidersTable;
  saml_assertion_ids: SamlAssertionIdsTable;
  management_tokens: ManagementTokensTable;
  audit_events: AuditEventsTable;
  revocation_events: RevocationEventsTable;
}

/** Written only by triggers on tokens (0010). */
export interface RevocationEventsTable {
  id: Generated<string>;
  occurred_at: Timestamp;
  token_sha256: string;
  jti: string | null;
  client_id: string | null;
  audience: string | null;
  expires_at: ColumnType<Date, Date, Date>;
  reason: 'revoked' | 'deleted';
}

export interface AuditEventsTable {
  id: Generated<string>;
  occurred_at: Timestamp;
  actor_type: 'management_user' | 'cli' | 'client' | 'system';
  actor: string;
  action: string;
  resource_type: string | null;
  resource_id: string | null;
  source: string | null;
  outcome: 'success' | 'failure';
  changed_fields: ColumnType<string[], string[] | undefined, string[]>;
}

export interface ManagementTokensTable {
  id_sha256: string;
  username: string;
  roles: string[];
  credential_sha256: string;
  issued_at: Timestamp;
  expires_at: ColumnType<Date, Date, Date>;
  last_used_at: Timestamp;
  revoked_at: NullableTimestamp;
}

export interface ConsentsTable {
  user_id: string;
  client_id: string;
  scopes: string[];
  granted_at: Timestamp;
  updated_at: Timestamp;
}

export type ClientRow = Selectable<ClientsTable>;
export type NewClientRow = Insertable<ClientsTable>;
export type ClientRowUpdate = Updateable<ClientsTable>;
export type TokenRow = Selectable<TokensTable>;

export interface UsersTable {
  id: Generated<string>;
  username: string;
  password_hash: string;
  disabled: ColumnType<boolean, boolean | undefined, boolean>;
  /** Both null: a local user. Both set: federated from this SAML IdP under this NameID. */
  federated_idp: ColumnType<string | null, string | null | undefined, string | null>;
  federated_name_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** Set by a trigger whenever `disabled` changes: rows written before it no longer count (0005). */
  tokens_valid_after: ColumnType<Date | null, never, never>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface RolesTable {
  name: string;
  description: ColumnType<string, string | undefined, string>;
  created_at: Timestamp;
}

export interface UserRolesTable {
  user_id: string;
  role_name: string;
  granted_at: Timestamp;
}

export interface ScopesTable {
  name: string;
  description: ColumnType<string, string | undefined, string>;
  created_at: Timestamp;
}

export interface ScopeRolesTable {
  scope_name: string;
  role_name: string;
}

export interface LoginFailuresTable {
  id: Generated<string>;
  username_lower: string;
  source_address: string;
  failed_at: Timestamp;
  /** A check still running (0007): counts against the room in the window, not yet a failure. */
  in_flight: ColumnType<boolean, boolean | undefined, boolean>;
  /** Named by the server before the reservation is sent (0018): a reservation whose answer was lost is found by it. */
  attempt_key: ColumnType<string | null, string | null | undefined, string | null>;
}

export type UserRow = Selectable<UsersTable>;

export interface SamlIdentityProvidersTable {
  entity_id: string;
  certificates: string[];
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  jit_provisioning: ColumnType<boolean, boolean | undefined, boolean>;
  jit_default_roles: ColumnType<string[], string[] | undefined, string[]>;
  allowed_clients: string[] | null;
  allow_transient: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface SamlAssertionIdsTable {
  idp_entity_id: string;
  assertion_id: string;
  expires_at: Timestamp;
  used_at: Timestamp;
}

export type IdpRow = Selectable<SamlIdentityProvidersTable>;
