-- Tuneyard's tables, as ../shared/DESIGN.md names them.
-- Identifiers made by Tuneyard are prefixed ULIDs (trn_..., msg_...): they sort by
-- creation time, so "newest first" is "id descending" and a cursor is an id.

-- A destination is a Replicate model that trainings write new versions into.
-- Settings left NULL fall back to the configured defaults when the model is created.
CREATE TABLE destinations (
    owner           text NOT NULL,
    name            text NOT NULL,
    visibility      text CHECK (visibility IN ('public', 'private')),
    hardware        text,
    description     text,
    -- Set once the model is known to exist on Replicate, so later trainings skip the
    -- get-or-create round trip.
    ensured_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, name)
);

CREATE TABLE trainings (
    id                   text PRIMARY KEY,
    caller               text NOT NULL,
    idempotency_key      text,
    -- SHA-256 of the canonical request body: the same key with another body is refused.
    request_hash         text NOT NULL,
    destination_owner    text NOT NULL,
    destination_name     text NOT NULL,
    trainer              text NOT NULL,          -- owner/name:version_id
    input                jsonb NOT NULL,
    destination_settings jsonb,
    metadata             jsonb NOT NULL DEFAULT '{}',
    callback_url         text,
    status               text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'submitted', 'running',
                          'succeeded', 'failed', 'canceled')),
    -- What Replicate last said, verbatim, including statuses Tuneyard does not know.
    replicate_status     text,
    replicate_id         text UNIQUE,
    error                text,
    version_id           text,
    attempts             integer NOT NULL DEFAULT 0,
    -- When a worker next looks at the training: the submitter while it is queued,
    -- the reconciler (if no webhook came) while it runs on Replicate.
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    -- The worker's claim on the training while it works on it. Writes that decide
    -- whether a create may be sent check it, so a worker whose lease ran out can
    -- never act on a training another worker has claimed since.
    claim_token          uuid,
    -- Why the last submission attempt did not get through, while it is retried.
    last_attempt_error   text,
    -- Set, and committed, before each create is sent. While it is set and
    -- replicate_id is not, a create may exist on Replicate: the submission is
    -- unsettled and must be resolved before another create is sent.
    create_sent_at       timestamptz,
    cancel_requested_at  timestamptz,
    last_event_at        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    submitted_at         timestamptz,
    started_at           timestamptz,
    completed_at         timestamptz,
    FOREIGN KEY (destination_owner, destination_name) REFERENCES destinations
);

CREATE UNIQUE INDEX trainings_idempotency_key
    ON trainings (caller, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The submitter's queue.
CREATE INDEX trainings_due ON trainings (next_attempt_at) WHERE status = 'queued';
-- The reconciler's queue: trainings on Replicate that have not finished.
CREATE INDEX trainings_in_flight ON trainings (next_attempt_at)
    WHERE status IN ('submitted', 'running');
CREATE INDEX trainings_by_destination
    ON trainings (destination_owner, destination_name, id DESC);
CREATE INDEX trainings_by_status ON trainings (status, id DESC);
CREATE INDEX trainings_metadata ON trainings USING gin (metadata jsonb_path_ops);

-- Every webhook and poll result applied to a training, in the order applied; also
-- webhooks for trainings Tuneyard does not know (training_id NULL), kept for audit.
CREATE TABLE training_events (
    id            bigserial PRIMARY KEY,
    training_id   text REFERENCES trainings ON DELETE CASCADE,
    replicate_id  text,
    -- Standard Webhooks' message id; unique, so a redelivered webhook is a no-op.
    webhook_id    text UNIQUE,
    source        text NOT NULL CHECK (source IN ('webhook', 'poll', 'submitter', 'cancel')),
    status        text,
    -- Whether the event moved the training's status forward.
    applied       boolean NOT NULL,
    body          jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX training_events_by_training ON training_events (training_id, id);

-- One row per fine-tuned version of a destination.
CREATE TABLE versions (
    owner         text NOT NULL,
    name          text NOT NULL,
    version_id    text NOT NULL,
    training_id   text REFERENCES trainings,
    weights_url   text,
    created_at    timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    description   text,
    tags          text[] NOT NULL DEFAULT '{}',
    deleted_at    timestamptz,
    PRIMARY KEY (owner, name, version_id),
    FOREIGN KEY (owner, name) REFERENCES destinations
);

-- Newest first with a unique tie-breaker: the keyset of every versions page.
CREATE INDEX versions_newest_first
    ON versions (owner, name, created_at DESC, version_id DESC);
CREATE INDEX versions_tags ON versions USING gin (tags);
CREATE UNIQUE INDEX versions_by_training ON versions (training_id)
    WHERE training_id IS NOT NULL;

CREATE TABLE aliases (
    owner       text NOT NULL,
    name        text NOT NULL,
    alias       text NOT NULL,
    version_id  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, name, alias),
    FOREIGN KEY (owner, name, version_id) REFERENCES versions
);

-- Every move of an alias, so its history can be read.
CREATE TABLE alias_history (
    id                   bigserial PRIMARY KEY,
    owner                text NOT NULL,
    name                 text NOT NULL,
    alias                text NOT NULL,
    version_id           text,            -- NULL when the alias was removed
    previous_version_id  text,
    caller               text NOT NULL,
    moved_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX alias_history_by_alias ON alias_history (owner, name, alias, id);

-- The outbox of signed callbacks to callers. A row is written in the same
-- transaction as the state change it reports, so none is lost.
CREATE TABLE notifications (
    id               text PRIMARY KEY,    -- also the webhook-id of every attempt
    training_id      text NOT NULL REFERENCES trainings ON DELETE CASCADE,
    caller           text NOT NULL,
    type             text NOT NULL,
    payload          jsonb NOT NULL,
    callback_url     text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX notifications_by_training ON notifications (training_id, id);

CREATE TABLE notification_attempts (
    notification_id  text NOT NULL REFERENCES notifications ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer NOT NULL,
    status_code      integer,
    error            text,
    PRIMARY KEY (notification_id, attempt)
);
