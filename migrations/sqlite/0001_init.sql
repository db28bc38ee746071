-- Sweeps, their trials, per-epoch metrics, checkpoints and final test results.
-- Portable SQL where it costs nothing (SQLite now; PostgreSQL is planned).

CREATE TABLE sweeps (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    spec_json     TEXT NOT NULL,
    spec_hash     TEXT NOT NULL,
    source_path   TEXT,
    sweep_version TEXT NOT NULL,
    burn_version  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT
);

CREATE TABLE trials (
    id            INTEGER PRIMARY KEY,
    sweep_id      INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    ordinal       INTEGER NOT NULL,
    trial_key     TEXT NOT NULL,
    params_json   TEXT NOT NULL,
    arch          TEXT NOT NULL,
    optimizer     TEXT NOT NULL,
    lr            REAL NOT NULL,
    batch_size    INTEGER NOT NULL,
    epochs        INTEGER NOT NULL,
    dropout       REAL NOT NULL,
    weight_decay  REAL NOT NULL,
    split         REAL NOT NULL,
    seed          INTEGER NOT NULL,
    repeat        INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'failed', 'diverged', 'interrupted')),
    device        TEXT,
    threads       INTEGER,
    started_at    TEXT,
    finished_at   TEXT,
    heartbeat_at  TEXT,
    duration_s    REAL,
    epochs_done   INTEGER NOT NULL DEFAULT 0,
    train_loss    REAL,
    train_acc     REAL,
    val_loss      REAL,
    val_acc       REAL,
    best_epoch    INTEGER,
    best_val_acc  REAL,
    best_val_loss REAL,
    test_loss     REAL,
    test_acc      REAL,
    error         TEXT,
    UNIQUE (sweep_id, trial_key)
);
CREATE INDEX trials_sweep_status ON trials (sweep_id, status);

CREATE TABLE epochs (
    trial_id    INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    train_loss  REAL,
    train_acc   REAL,
    val_loss    REAL,
    val_acc     REAL,
    seconds     REAL NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);

CREATE TABLE checkpoints (
    trial_id   INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('last', 'best')),
    epoch      INTEGER NOT NULL,
    path       TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (trial_id, kind)
);

CREATE TABLE class_metrics (
    trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    class    INTEGER NOT NULL,
    correct  INTEGER NOT NULL,
    total    INTEGER NOT NULL,
    accuracy REAL,
    PRIMARY KEY (trial_id, class)
);

CREATE TABLE confusion (
    trial_id  INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    actual    INTEGER NOT NULL,
    predicted INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (trial_id, actual, predicted)
);
