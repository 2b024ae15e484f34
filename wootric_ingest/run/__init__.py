"""One run of the job: plan each stream, extract it to staging, land it in one commit, record it."""
