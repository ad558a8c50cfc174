"""The home: a client of the aggregator and a server for its relay boards."""
