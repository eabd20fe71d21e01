-- compatible_from: 12
-- Renewal by the CA's ARI window (issue 11, RFC 9773): what the CA's renewalInfo last said
-- about a certificate (its suggested window) and when to ask it again. Nullable columns older
-- binaries never read.

ALTER TABLE certificates
  ADD COLUMN ari_window_start timestamptz,
  ADD COLUMN ari_window_end timestamptz,
  ADD COLUMN ari_next_check timestamptz,
  ADD CONSTRAINT certificates_ari_window CHECK (
    (ari_window_start IS NULL) = (ari_window_end IS NULL)
    AND (ari_window_start IS NULL OR ari_window_end >= ari_window_start));
