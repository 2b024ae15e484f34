"""Wootric NPS data into Delta Lake: config, API client, streams, Delta sink, job, CLI."""
