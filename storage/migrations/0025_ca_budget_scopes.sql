-- compatible_from: 24
-- Two more of a CA's published limits (issue 11, item 5; Let's Encrypt: 5 certificates per
-- exact set of identifiers per week, 10 new accounts per client IP per 3 hours):
-- * ca_budgets.identifiers_hash: a bucket of the tenant's for one identifier set (account_id 0),
--   beside the account buckets, whose hash stays the empty string. The key grows by it. An
--   older binary takes and gives back only account buckets by (account_id, budget), which stay
--   one row each, so it is admitted.
-- * ca_directory_budgets: the fleet's buckets per CA directory, shared by every tenant (a limit
--   by client address is the whole fleet's). They hold no tenant data; the app reaches them only
--   through av_take_directory_budget_token and av_return_directory_budget_token (the definer's),
--   which take and give back as the account buckets' statements do.

ALTER TABLE ca_budgets ADD COLUMN identifiers_hash bytea NOT NULL DEFAULT '\x'::bytea;
ALTER TABLE ca_budgets DROP CONSTRAINT ca_budgets_pkey;
ALTER TABLE ca_budgets ADD PRIMARY KEY (tenant_id, account_id, budget, identifiers_hash);

CREATE TABLE ca_directory_budgets (
  directory_url text NOT NULL CHECK (octet_length(directory_url) BETWEEN 1 AND 2048),
  budget text NOT NULL CHECK (octet_length(budget) BETWEEN 1 AND 64),
  tokens double precision NOT NULL CHECK (tokens >= 0),
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (directory_url, budget)
);
ALTER TABLE ca_directory_budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ca_directory_budgets FORCE ROW LEVEL SECURITY;
CREATE POLICY fleet_budgets ON ca_directory_budgets TO acmevault_definer
  USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE ON ca_directory_budgets TO acmevault_definer;

-- A new bucket starts full; then the take refills by the time since the last one (never for
-- time running backwards) times capacity / period, caps at the capacity and takes a whole token
-- if there is one. The
-- row lock orders concurrent takes of every replica. Returns whether a token was taken and the
-- tokens left.
CREATE FUNCTION av_take_directory_budget_token(directory text, budget_name text, capacity float8,
                                               period_us float8, now_us bigint)
RETURNS TABLE (taken boolean, tokens float8)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  refilled float8;
BEGIN
  INSERT INTO ca_directory_budgets AS b (directory_url, budget, tokens, updated_at)
  VALUES (directory, budget_name, capacity, av_ts(now_us)) ON CONFLICT DO NOTHING;
  SELECT LEAST(capacity,
               b.tokens + GREATEST(0, now_us - av_us(b.updated_at)) * capacity / period_us)
    INTO refilled FROM ca_directory_budgets b
    WHERE b.directory_url = directory AND b.budget = budget_name FOR UPDATE;
  taken := refilled >= 1;
  tokens := CASE WHEN taken THEN refilled - 1 ELSE refilled END;
  UPDATE ca_directory_budgets b SET tokens = av_take_directory_budget_token.tokens,
      updated_at = GREATEST(b.updated_at, av_ts(now_us))
    WHERE b.directory_url = directory AND b.budget = budget_name;
  RETURN NEXT;
END $$;

-- Gives one token back, to at most the capacity; a bucket never taken from stays as it is.
CREATE FUNCTION av_return_directory_budget_token(directory text, budget_name text, capacity float8)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  UPDATE ca_directory_budgets SET tokens = LEAST(capacity, tokens + 1)
    WHERE directory_url = directory AND budget = budget_name
$$;

CALL av_give_to_definer(ARRAY['av_take_directory_budget_token',
                              'av_return_directory_budget_token'], 'acmevault_app');
