-- Delivering the outbox of callbacks in order, spread across replicas.

-- The order of a training's notifications. Ids are ULIDs, and two made in the same
-- millisecond need not sort in the order made; this sequence does, because a
-- training's notifications are written while its row is locked.
ALTER TABLE notifications ADD COLUMN seq bigserial;

-- A notifier's claim while it delivers, as claim_token does for trainings: a
-- worker whose lease ran out cannot record an attempt over another's.
ALTER TABLE notifications ADD COLUMN claim_token uuid;

DROP INDEX notifications_by_training;
CREATE INDEX notifications_by_training ON notifications (training_id, seq);

-- Each training's next pending notification (the only one that may be sent) is
-- found from this index; the due ones among them by next_attempt_at.
CREATE INDEX notifications_pending ON notifications (training_id, seq)
    WHERE status = 'pending';

-- Redelivering a caller's failed notifications since a time.
CREATE INDEX notifications_failed ON notifications (caller, created_at)
    WHERE status = 'failed';

-- Where in the retry schedule the next attempt stands. `attempts` counts every
-- attempt ever made (and numbers them); a redelivery starts the schedule over.
ALTER TABLE notifications ADD COLUMN retry_index integer NOT NULL DEFAULT 0;
