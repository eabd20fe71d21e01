-- compatible_from: 11
-- Background renewal (issue 11): a renewed certificate records the serial of the one it
-- replaced (the old one stays as it was: superseded, not revoked). A nullable column older
-- binaries never read. Set once, to another certificate's serial form.

ALTER TABLE certificates ADD COLUMN replaces_serial text
  CHECK (replaces_serial ~ '^[0-9a-f]{1,64}$');

CREATE FUNCTION av_certificates_replaces_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.replaces_serial IS NOT NULL
     AND NEW.replaces_serial IS DISTINCT FROM OLD.replaces_serial THEN
    PERFORM av_refuse('certificate already records the one it replaced');
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER certificates_replaces_guard BEFORE UPDATE OF replaces_serial ON certificates
  FOR EACH ROW EXECUTE FUNCTION av_certificates_replaces_guard();
