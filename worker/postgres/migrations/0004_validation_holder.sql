-- The newest upload wins: a product remembers the key timestamp of the upload it came from, and
-- only an upload at least as new replaces it (rows from before this column count as oldest).
ALTER TABLE products ADD COLUMN IF NOT EXISTS source_timestamp timestamptz;
-- The vendor notice of the current version, once SNS took it; NULL: still to send.
ALTER TABLE upload_history ADD COLUMN IF NOT EXISTS notice_sent_at timestamptz;
-- Valid rows of the last validation that a newer upload's products had already replaced.
ALTER TABLE upload_history ADD COLUMN IF NOT EXISTS superseded_records integer;
