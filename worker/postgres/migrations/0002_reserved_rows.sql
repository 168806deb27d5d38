-- The highest row number that may have a staging item (reserved before rows are written), so
-- that a later version with fewer rows removes the surplus even after a worker was killed.
ALTER TABLE upload_history ADD COLUMN IF NOT EXISTS reserved_rows integer NOT NULL DEFAULT 0;
UPDATE upload_history SET reserved_rows = total_records WHERE reserved_rows = 0;
