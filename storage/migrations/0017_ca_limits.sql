-- Retries that respect the CA (issue 11, item 5).
--
-- ca_holds: a CA's rateLimited answer (with Retry-After) to a request of an account for an
-- identifier set, kept until the time it named, so that no replica sends that request again
-- before it passes. One row per tenant, account, identifier set (av_identifiers_hash; the empty
-- set for requests that name none, e.g. newAccount) and request; a later time wins.
--
-- ca_budgets: token buckets (a row per tenant, account and budget, e.g. 'new_order') that keep
-- the whole fleet under a CA's published limits. A take refills by the time elapsed since
-- updated_at, at most to the capacity, and takes one token when at least one is there, in one
-- statement (the row's lock serialises replicas).
--
-- orders.stalled_at: when an order the CA kept processing past the service's timeout was set
-- aside. A stalled order stays in flight for its job (resumed from its stored URL, never
-- finalized again) but no longer holds the identifier set: orders_one_in_flight leaves it out,
-- so a new request makes a new order. Older binaries would join a stalled order and may see
-- two in flight for a set: this migration admits only binaries that know it.

CREATE TABLE ca_holds (
  tenant_id bigint NOT NULL REFERENCES tenants (id),
  account_id bigint NOT NULL,
  identifiers_hash bytea NOT NULL,
  request text NOT NULL CHECK (request IN ('newOrder', 'newAccount', 'finalize')),
  hold_until timestamptz NOT NULL,
  problem text NOT NULL CHECK (octet_length(problem) <= 1024),
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, account_id, identifiers_hash, request)
);

CREATE TABLE ca_budgets (
  tenant_id bigint NOT NULL REFERENCES tenants (id),
  account_id bigint NOT NULL,
  budget text NOT NULL CHECK (octet_length(budget) BETWEEN 1 AND 64),
  tokens double precision NOT NULL CHECK (tokens >= 0),
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, account_id, budget)
);

-- Tenant isolation and grants as 0003 gives every tenant table.
ALTER TABLE ca_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE ca_holds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ca_holds TO acmevault_app
  USING (tenant_id = av_tenant()) WITH CHECK (tenant_id = av_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON ca_holds TO acmevault_app;
ALTER TABLE ca_budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ca_budgets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ca_budgets TO acmevault_app
  USING (tenant_id = av_tenant()) WITH CHECK (tenant_id = av_tenant());
GRANT SELECT, INSERT, UPDATE ON ca_budgets TO acmevault_app;

ALTER TABLE orders ADD COLUMN stalled_at timestamptz;
DROP INDEX orders_one_in_flight;
CREATE UNIQUE INDEX orders_one_in_flight ON orders (tenant_id, identifiers_hash)
  WHERE state NOT IN ('valid', 'invalid') AND stalled_at IS NULL;
