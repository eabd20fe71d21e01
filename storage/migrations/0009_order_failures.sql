-- compatible_from: 8
-- Orders keep the CA's problem type of a failure. Additive: a binary that knows migrations up to
-- 0008 never reads the new column (it defaults to ''), so it keeps running against this schema.

-- The ACME problem type (RFC 8555 §6.7, e.g. urn:ietf:params:acme:error:rejectedIdentifier) of
-- the CA's answer that made the order invalid; '' when the failure carried none. A constant
-- default adds the column without rewriting the table; the CHECK is NOT VALID, so adding it does
-- not scan the table (every existing row holds '').
ALTER TABLE orders ADD COLUMN problem_type text NOT NULL DEFAULT '';
ALTER TABLE orders ADD CONSTRAINT orders_problem_type_size
  CHECK (octet_length(problem_type) <= 256) NOT VALID;
