-- Configurations queued with `sweep enqueue` for a search's next draws: the searched
-- parameters they fix (a JSON object, name to the point's coordinate: a value, or the index of
-- a listed value), taken by the draw whose number `draw` records, in one transaction with the
-- trial it makes, so a configuration is drawn once however many processes draw.
CREATE TABLE enqueued_trials (
    id          INTEGER PRIMARY KEY,
    sweep_id    INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    point_json  TEXT NOT NULL,
    label       TEXT NOT NULL,
    draw        INTEGER,
    created_at  TEXT NOT NULL
);
CREATE INDEX enqueued_trials_waiting ON enqueued_trials (sweep_id, draw);
