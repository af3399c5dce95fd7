-- Serving each destination's versions as a collection.

-- Counting a destination's live versions reads this index alone. A counter column
-- would be cheaper to read, but every recorded version would then update one
-- destination row, serialising successful webhooks for a busy destination.
CREATE INDEX versions_live ON versions (owner, name) WHERE deleted_at IS NULL;

-- Where a version came from: a training Tuneyard ran, or a sync from Replicate.
ALTER TABLE versions ADD COLUMN source text NOT NULL DEFAULT 'training'
    CHECK (source IN ('training', 'sync'));

