"""BK-JOB, the system this bot serves: its v2 and v3 clients and the vocabulary the core speaks in."""
