"""What jeisson serves over HTTP: the JSON API, the dashboard, the live push and /metrics."""
