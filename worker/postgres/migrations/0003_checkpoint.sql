-- The highest row N such that every row up to N of this object version (s3_etag) is written:
-- a new attempt on the same version resumes after it.
ALTER TABLE upload_history ADD COLUMN IF NOT EXISTS checkpoint_row integer NOT NULL DEFAULT 0;
