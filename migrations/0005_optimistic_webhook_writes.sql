-- Webhook batches are written in one statement that must not apply over a
-- concurrent change; when it finds one, this function aborts the statement (and
-- with it everything the statement wrote), and the batch is read and applied again.
CREATE FUNCTION tuneyard_write_conflict() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a training in this batch changed since it was read'
        USING ERRCODE = 'TY409';
END
$$;
