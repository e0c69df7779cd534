"""The study: its plan, the job runner, learning-rate selection, records on disk, the
aggregate table and the statistics the report draws from it."""
