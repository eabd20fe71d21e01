-- compatible_from: 30
-- The same CHECK constraints, evaluated at a fraction of the cost (docs/benchmarks.md). A DWARF
-- profile of PostgreSQL running issue 10's floor put ExecConstraints at 8% of its samples:
--
-- * Three format checks were regular expressions with a counted repeat over a class, anchored
--   at both ends: jobs.subject '^[!-~]{1,200}$', challenges.token '^[A-Za-z0-9_-]{1,255}$',
--   certificates.serial and replaces_serial '^[0-9a-f]{1,64}$'. PostgreSQL's regex engine
--   builds each such match's automaton anew, about 27, 33 and 1.6 us a value here (100,000
--   values each, psql's \timing), and allocates and frees enough memory for it that glibc
--   gives pages back to the kernel (brk) and faults them in again. Every INSERT and UPDATE of
--   the row checks them: a job is written at each step of its order. Each is now a length
--   test and a search for a character outside the class, which accepts exactly the same
--   strings (a string of 1 to N characters, every one in the class: each such character is
--   one byte, so octet_length is the length) and costs about 0.3 us.
-- * av_identifiers_canonical (CHECK on orders and certificates) sorted the array with a
--   subquery (DISTINCT ... ORDER BY) run by SPI, an executor and a sort per call. Canonical
--   is the same as strictly increasing under COLLATE "C", tested pairwise in a loop. The
--   edge cases keep their answers: a one-dimensional array indexed from 1 (the ARRAY()
--   comparison checked bounds too), one NULL element allowed only last (DISTINCT keeps one
--   NULL and ORDER BY puts it last, and array equality treats NULLs as equal), 1 to 100
--   elements, NULL for NULL (STRICT).
--
-- Every stored row met the old checks, so it meets the new ones: they are added NOT VALID
-- (no scan of the table under its lock) with the old names. No binary can tell.
ALTER TABLE jobs DROP CONSTRAINT jobs_subject_format,
  ADD CONSTRAINT jobs_subject_format
    CHECK (octet_length(subject) BETWEEN 1 AND 200 AND subject !~ '[^!-~]') NOT VALID;

ALTER TABLE challenges DROP CONSTRAINT challenges_token_check,
  ADD CONSTRAINT challenges_token_check
    CHECK (octet_length(token) BETWEEN 1 AND 255 AND token !~ '[^A-Za-z0-9_-]') NOT VALID;

ALTER TABLE certificates DROP CONSTRAINT certificates_serial_check,
  ADD CONSTRAINT certificates_serial_check
    CHECK (octet_length(serial) BETWEEN 1 AND 64 AND serial !~ '[^0-9a-f]') NOT VALID,
  DROP CONSTRAINT certificates_replaces_serial_check,
  ADD CONSTRAINT certificates_replaces_serial_check
    CHECK (octet_length(replaces_serial) BETWEEN 1 AND 64 AND replaces_serial !~ '[^0-9a-f]')
    NOT VALID;

CREATE OR REPLACE FUNCTION av_identifiers_canonical(ids text[]) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  n integer := cardinality(ids);
BEGIN
  IF n NOT BETWEEN 1 AND 100 OR array_ndims(ids) <> 1 OR array_lower(ids, 1) <> 1 THEN
    RETURN false;
  END IF;
  FOR i IN 2..n LOOP
    IF ids[i - 1] IS NULL THEN
      RETURN false;  -- a NULL that is not last
    END IF;
    IF ids[i] IS NOT NULL AND NOT (ids[i - 1] COLLATE "C" < ids[i] COLLATE "C") THEN
      RETURN false;
    END IF;
  END LOOP;
  RETURN true;
END $$;
