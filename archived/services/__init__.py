"""archived's nearline lifecycle: FileCopy, SyncFileStatus, the deleter and their scheduler.

Nothing is imported here: archived.conf.model takes its schedule types from
archived.services.intervals, and importing the services (which read the configuration)
from this package's start would make an import cycle. Import the modules:

    archived.services.intervals   TaskInterval, RetryIntervals (dcm4chee 2.x syntax)
    archived.services.filecopy    FileCopyService: pack quiet series into tars on the mount
    archived.services.syncstatus  SyncFileStatusService: TO_ARCHIVE -> ARCHIVED or failure
    archived.services.deleter     DeleterService: retention rules, free space
    archived.services.scheduler   Scheduler: runs the three inside `archived serve`
    archived.services.commands    `archivectl run filecopy|sync|deleter [--dry-run]`
"""
