-- archived's DICOM index, schema version 2 (see migrations.py for the change log).
-- Idempotent: applied to a new, empty database; older databases are upgraded by
-- migrations.py instead. Times are Unix seconds (REAL, UTC). Strings are stored decoded
-- (Unicode); DICOM dates are 'YYYYMMDD', times 'HHMMSS[.FFFFFF]' as received.

CREATE TABLE IF NOT EXISTS filesystem (
    pk            INTEGER PRIMARY KEY,
    fs_uuid       TEXT NOT NULL UNIQUE,     -- the configuration's file system uuid (mirrored)
    fs_group_id   TEXT NOT NULL,            -- ONLINE_STORAGE, NEARLINE_STORAGE, ...
    dirpath       TEXT NOT NULL,            -- root directory; 'tar:<mount>' for tar file systems
    fs_status     TEXT NOT NULL DEFAULT 'RW' CHECK (fs_status IN ('RW', 'RO')),
    updated_time  REAL NOT NULL             -- when the mirror last changed this row
);

CREATE TABLE IF NOT EXISTS patient (
    pk            INTEGER PRIMARY KEY,
    pat_id        TEXT NOT NULL DEFAULT '', -- Patient ID (0010,0020)
    pat_id_issuer TEXT NOT NULL DEFAULT '', -- Issuer of Patient ID (0010,0021)
    pat_name      TEXT NOT NULL DEFAULT '', -- Patient's Name (0010,0010), DICOM PN string
    pat_birthdate TEXT NOT NULL DEFAULT '', -- Patient's Birth Date (0010,0030)
    pat_sex       TEXT NOT NULL DEFAULT '', -- Patient's Sex (0010,0040)
    created_time  REAL NOT NULL,            -- first instance of the patient indexed
    updated_time  REAL NOT NULL             -- attributes last replaced
);
CREATE INDEX IF NOT EXISTS patient_id ON patient (pat_id, pat_id_issuer);
CREATE INDEX IF NOT EXISTS patient_name ON patient (pat_name);

CREATE TABLE IF NOT EXISTS study (
    pk             INTEGER PRIMARY KEY,
    patient_fk     INTEGER NOT NULL REFERENCES patient (pk),
    study_iuid     TEXT NOT NULL UNIQUE,    -- Study Instance UID (0020,000D)
    study_id       TEXT NOT NULL DEFAULT '', -- Study ID (0020,0010)
    study_date     TEXT NOT NULL DEFAULT '', -- Study Date (0008,0020)
    study_time     TEXT NOT NULL DEFAULT '', -- Study Time (0008,0030)
    accession_no   TEXT NOT NULL DEFAULT '', -- Accession Number (0008,0050)
    ref_physician  TEXT NOT NULL DEFAULT '', -- Referring Physician's Name (0008,0090)
    study_desc     TEXT NOT NULL DEFAULT '', -- Study Description (0008,1030)
    mods_in_study  TEXT NOT NULL DEFAULT '', -- Modalities in Study, backslash separated
    cuids_in_study TEXT NOT NULL DEFAULT '', -- SOP Classes in Study, backslash separated
    num_series     INTEGER NOT NULL DEFAULT 0, -- Number of Study Related Series
    num_instances  INTEGER NOT NULL DEFAULT 0, -- Number of Study Related Instances
    created_time   REAL NOT NULL,
    updated_time   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS study_patient ON study (patient_fk);
CREATE INDEX IF NOT EXISTS study_date ON study (study_date);
CREATE INDEX IF NOT EXISTS study_accession ON study (accession_no);

CREATE TABLE IF NOT EXISTS series (
    pk            INTEGER PRIMARY KEY,
    study_fk      INTEGER NOT NULL REFERENCES study (pk),
    series_iuid   TEXT NOT NULL UNIQUE,     -- Series Instance UID (0020,000E)
    series_no     TEXT NOT NULL DEFAULT '', -- Series Number (0020,0011), as received
    modality      TEXT NOT NULL DEFAULT '', -- Modality (0008,0060)
    series_desc   TEXT NOT NULL DEFAULT '', -- Series Description (0008,103E)
    body_part     TEXT NOT NULL DEFAULT '', -- Body Part Examined (0018,0015)
    series_date   TEXT NOT NULL DEFAULT '', -- Series Date (0008,0021)
    series_time   TEXT NOT NULL DEFAULT '', -- Series Time (0008,0031)
    institution   TEXT NOT NULL DEFAULT '', -- Institution Name (0008,0080)
    station_name  TEXT NOT NULL DEFAULT '', -- Station Name (0008,1010)
    src_aet       TEXT NOT NULL DEFAULT '', -- AE title that sent the first instance
    num_instances INTEGER NOT NULL DEFAULT 0, -- Number of Series Related Instances
    created_time  REAL NOT NULL,
    updated_time  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series (study_fk);

CREATE TABLE IF NOT EXISTS instance (
    pk            INTEGER PRIMARY KEY,
    series_fk     INTEGER NOT NULL REFERENCES series (pk),
    sop_iuid      TEXT NOT NULL UNIQUE,     -- SOP Instance UID (0008,0018)
    sop_cuid      TEXT NOT NULL,            -- SOP Class UID (0008,0016)
    inst_no       TEXT NOT NULL DEFAULT '', -- Instance Number (0020,0013), as received
    content_date  TEXT NOT NULL DEFAULT '', -- Content Date (0008,0023)
    content_time  TEXT NOT NULL DEFAULT '', -- Content Time (0008,0033)
    commitment    INTEGER NOT NULL DEFAULT 0, -- 1 once a storage commitment succeeded for it
    created_time  REAL NOT NULL,
    updated_time  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_series ON instance (series_fk);

CREATE TABLE IF NOT EXISTS file (
    pk             INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: FileCopy names tar members by it
    instance_fk    INTEGER NOT NULL REFERENCES instance (pk),
    filesystem_fk  INTEGER NOT NULL REFERENCES filesystem (pk),
    filepath       TEXT NOT NULL,           -- relative to the file system; 'tarpath!member' in tars
    file_tsuid     TEXT NOT NULL,           -- transfer syntax the file is stored in
    file_md5       TEXT NOT NULL,           -- 32 lower-case hex digits of the whole file
    file_size      INTEGER NOT NULL,        -- bytes
    file_status    INTEGER NOT NULL DEFAULT 0
        CHECK (file_status BETWEEN -5 AND 4), -- dcm4chee 2.x codes, see FileStatus
    md5_check_time REAL,                    -- last successful MD5 verification, NULL if never
    created_time   REAL NOT NULL,
    UNIQUE (filesystem_fk, filepath)
);
CREATE INDEX IF NOT EXISTS file_instance ON file (instance_fk);
CREATE INDEX IF NOT EXISTS file_status ON file (file_status, filesystem_fk);

CREATE TABLE IF NOT EXISTS study_on_fs (
    pk            INTEGER PRIMARY KEY,
    study_fk      INTEGER NOT NULL REFERENCES study (pk),
    filesystem_fk INTEGER NOT NULL REFERENCES filesystem (pk),
    access_time   REAL NOT NULL,            -- last store into or retrieve of the study
    UNIQUE (study_fk, filesystem_fk)
);
CREATE INDEX IF NOT EXISTS study_on_fs_access ON study_on_fs (filesystem_fk, access_time);

CREATE TABLE IF NOT EXISTS stgcmt (
    pk             INTEGER PRIMARY KEY,
    transaction_uid TEXT NOT NULL,          -- Transaction UID (0008,1195) of the N-ACTION
    requester_aet  TEXT NOT NULL,           -- AE title that asked for the commitment
    sop_iuid       TEXT NOT NULL,           -- Referenced SOP Instance UID
    sop_cuid       TEXT NOT NULL,           -- Referenced SOP Class UID
    failure_reason INTEGER,                 -- NULL if committed, else (0008,1197) code
    request_time   REAL NOT NULL,           -- N-ACTION received
    report_time    REAL                     -- N-EVENT-REPORT answered by the requester
);
CREATE INDEX IF NOT EXISTS stgcmt_transaction ON stgcmt (transaction_uid);

-- FileCopy's back-off per failed series, kept here so that a restart keeps it; the row
-- goes once the series is copied.
CREATE TABLE IF NOT EXISTS filecopy_retry (
    series_fk     INTEGER PRIMARY KEY REFERENCES series (pk) ON DELETE CASCADE,
    failures      INTEGER NOT NULL CHECK (failures >= 1), -- failed FileCopy attempts in a row
    next_attempt  REAL,                     -- when FileCopy tries again; NULL: RetryIntervals
                                            -- used up, the series waits for a forced run
    error         TEXT NOT NULL,            -- why the last attempt failed
    failed_time   REAL NOT NULL             -- when the last attempt failed
);
