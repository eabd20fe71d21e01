-- compatible_from: 19
-- GetOrder shows its order's job (issue 11, item 5: attempts, the last CA problem, the next
-- attempt or the give-up), open or failed for good: JobStore::FindJob reads the job of a
-- tenant, kind and subject. jobs_one_open covers open rows only; failed rows stay for
-- inspection and would otherwise be scanned. The ephemeral-account sweep (item 7:
-- AccountStore::ListEphemeralAccountsToClose) looks for an account's orders still in flight and
-- its open deactivation job. Indexes no older binary needs to know about.

CREATE INDEX jobs_by_subject ON jobs (tenant_id, kind, subject, id);
CREATE INDEX orders_in_flight_by_account ON orders (tenant_id, account_id)
  WHERE state NOT IN ('valid', 'invalid');
